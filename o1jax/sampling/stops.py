"""Stop strings, detected exactly inside the compiled decode loop.

MCTS steps end at `<Step_End>` and code blocks at a closing fence, but a stop string rarely arrives as one token: the
model may write `<Step` + `_End>` or `>\n` + "```". So we match on bytes, not token ids. A byte automaton for the
stops (strings, or sequences of strings that must occur in order: ("```python", "\n```") ends a path once its python
block is closed) is folded, on the host and once per set of stops, into a token-level transition table
`next[state, token]`: the automaton state after reading that token's bytes, or -1 if a stop completed anywhere inside
them. The decode loop then advances each row with one gather per token, whatever the tokenization.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

MATCHED = -1  # table entry: a stop string was completed inside this token


def _bytes_to_unicode() -> dict[str, int]:
    """The GPT-2 byte-level BPE alphabet: printable unicode char -> byte."""
    from o1jax.models.gguf_tokenizer import bytes_to_unicode
    return {c: b for b, c in bytes_to_unicode().items()}


def token_bytes(tokenizer, vocab_size: int) -> list[bytes]:
    """The bytes each token id contributes to decoded text (ids past the tokenizer's vocabulary contribute none).

    Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM2) maps each piece char to a byte; SentencePiece pieces use '▁' for a
    space and <0xNN> for raw bytes; added (special) tokens contribute their literal content, as decode() writes them.
    """
    hf = tokenizer.hf
    n = min(vocab_size, len(hf))
    pieces = hf.convert_ids_to_tokens(list(range(n)))
    added = {int(i): t.content for i, t in getattr(hf, "added_tokens_decoder", {}).items()}
    decoder = str(getattr(getattr(hf, "backend_tokenizer", None), "decoder", "") or "")
    byte_level = "ByteLevel" in decoder
    b2u = _bytes_to_unicode()
    out: list[bytes] = []
    for i, p in enumerate(pieces):
        if i in added:
            out.append(added[i].encode("utf-8"))
        elif p is None:
            out.append(b"")
        elif byte_level and all(c in b2u for c in p):
            out.append(bytes(b2u[c] for c in p))
        elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            out.append(bytes([int(p[3:5], 16)]))
        elif "▁" in p or not byte_level:
            out.append(p.replace("▁", " ").encode("utf-8"))
        else:
            out.append(hf.decode([i]).encode("utf-8"))
    out.extend([b""] * (vocab_size - n))
    return out


def _kmp(s: bytes) -> np.ndarray:
    """[len(s) + 1, 256] int32: how much of s has been matched after one more byte (state len(s) = all of it)."""
    t = np.zeros((len(s) + 1, 256), np.int32)
    t[0, s[0]] = 1
    back = 0  # the state the automaton would be in had the first byte of the match not been read
    for j in range(1, len(s) + 1):
        t[j] = t[back]
        if j < len(s):
            t[j, s[j]] = j + 1
            back = t[back, s[j]]
    return t


def _automaton(patterns: Sequence[tuple[bytes, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """DFA over bytes that accepts as soon as any pattern is complete. A pattern is a sequence of strings that must
    occur in order, each after the end of the previous one (a plain stop string is a sequence of one). States are
    built by breadth-first search over (which string, how much of it) per pattern, with every accepting state merged
    into one sink. -> goto [N, 256] int32, accepting [N] bool."""
    kmps = [[_kmp(s) for s in p] for p in patterns]
    start = tuple((0, 0) for _ in patterns)
    index, order, rows, sink = {start: 0}, [start], [], None
    for state in order:  # `order` grows while we walk it
        row = np.zeros(256, np.int32)
        if state is not None:
            for b in range(256):
                nxt = []
                for (i, j), p, km in zip(state, patterns, kmps):
                    j = int(km[i][j, b])
                    if j == len(p[i]):
                        i, j = i + 1, 0
                        if i == len(p):
                            nxt = None
                            break
                    nxt.append((i, j))
                key = None if nxt is None else tuple(nxt)
                if key not in index:
                    index[key] = len(order)
                    order.append(key)
                row[b] = index[key]
        else:
            sink = index[None]
            row[:] = sink
        rows.append(row)
    accept = np.zeros(len(order), bool)
    if sink is not None:
        accept[sink] = True
    return np.stack(rows), accept


def normalize_stops(stop) -> tuple[tuple[str, ...], ...]:
    """A stop argument -> a canonical, hashable tuple of patterns. Each entry is a string (stop there) or a tuple of
    strings that must occur in that order (stop at the end of the last one: ("```python", "\n```") stops when a
    python block is closed, not at the end of an earlier pseudocode block)."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    out = set()
    for s in items:
        seq = (s,) if isinstance(s, str) else tuple(s)
        if not all(isinstance(x, str) for x in seq):
            raise TypeError(f"stop {s!r}: a stop is a string or a tuple of strings")
        seq = tuple(x for x in seq if x)
        if seq:
            out.add(seq)
    return tuple(sorted(out))


def stop_table(stops, tok_bytes: Sequence[bytes]) -> np.ndarray:
    """[N, V] int32: the automaton state after reading a token from each state, or MATCHED. State 0 is the start.
    stops: as `normalize_stops` takes them."""
    goto, accept = _automaton([tuple(x.encode("utf-8") for x in p) for p in normalize_stops(stops)])
    n_states, vocab = goto.shape[0], len(tok_bytes)
    lengths = np.fromiter((len(b) for b in tok_bytes), np.int64, vocab)
    width = int(lengths.max(initial=0))
    flat = np.zeros((vocab, max(width, 1)), np.uint8)
    for i, b in enumerate(tok_bytes):
        flat[i, :len(b)] = np.frombuffer(b, np.uint8)
    order = np.argsort(-lengths, kind="stable")  # longest first, so byte j only touches tokens longer than j
    counts = [int((lengths > j).sum()) for j in range(width)]
    state = np.broadcast_to(np.arange(n_states, dtype=np.int32)[:, None], (n_states, vocab)).copy()
    matched = np.zeros((n_states, vocab), bool)
    for j in range(width):
        cols = order[:counts[j]]
        nxt = goto[state[:, cols], flat[cols, j][None, :]]
        state[:, cols] = nxt
        matched[:, cols] |= accept[nxt]
    return np.where(matched, MATCHED, state).astype(np.int32)


def _end_of(text: str, pattern: tuple[str, ...]) -> int | None:
    """Where the earliest completion of a pattern ends in text (each string found leftmost after the previous)."""
    at = 0
    for x in pattern:
        i = text.find(x, at)
        if i < 0:
            return None
        at = i + len(x)
    return at


def truncate_at_stop(text: str, stops) -> str | None:
    """`text` cut right after the earliest-ending stop (the stop string is kept), or None if none occurs."""
    ends = [e for p in normalize_stops(stops) if (e := _end_of(text, p)) is not None]
    return text[:min(ends)] if ends else None
