"""Stop strings, detected exactly inside the compiled decode loop.

MCTS steps end at `<Step_End>` and code blocks at a closing fence, but a stop string rarely arrives as one token: the
model may write `<Step` + `_End>` or `>\n` + "```". So we match on bytes, not token ids. An Aho-Corasick automaton over
the stop strings' UTF-8 bytes is folded, on the host and once per set of stop strings, into a token-level transition
table `next[state, token]`: the automaton state after reading that token's bytes, or -1 if a stop string ended
anywhere inside them. The decode loop then advances each row with one gather per token, whatever the tokenization.
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


def _automaton(stops: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Aho-Corasick DFA: goto [N, 256] int32 and accepting [N] bool (some stop string ends at this state)."""
    children: list[dict[int, int]] = [{}]
    accept = [False]
    for s in stops:
        node = 0
        for b in s:
            if b not in children[node]:
                children.append({})
                accept.append(False)
                children[node][b] = len(children) - 1
            node = children[node][b]
        accept[node] = True
    n = len(children)
    goto = np.zeros((n, 256), np.int32)
    fail = [0] * n
    order = [0]
    for b, c in children[0].items():
        goto[0, b] = c
        order.append(c)
    head = 1
    while head < len(order):  # BFS: a node's failure link is final before its children are visited
        node = order[head]
        head += 1
        accept[node] = accept[node] or accept[fail[node]]
        goto[node] = goto[fail[node]]
        for b, c in children[node].items():
            fail[c] = goto[fail[node], b]
            goto[node, b] = c
            order.append(c)
    return goto, np.asarray(accept)


def stop_table(stops: Sequence[str], tok_bytes: Sequence[bytes]) -> np.ndarray:
    """[N, V] int32: the automaton state after reading a token from each state, or MATCHED. State 0 is the start."""
    goto, accept = _automaton(sorted({s.encode("utf-8") for s in stops if s}))
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


def truncate_at_stop(text: str, stops: Sequence[str]) -> str | None:
    """`text` cut right after the earliest-ending stop string (the stop string is kept), or None if none occurs."""
    ends = [i + len(s) for s in stops if s and (i := text.find(s)) >= 0]
    return text[:min(ends)] if ends else None
