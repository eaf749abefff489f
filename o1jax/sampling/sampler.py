"""The sampler: the policy's rollouts for MCTS, test-case generation, evaluation and RL all come through here.

One call = prefill every distinct prompt once (right-padded to a bucketed length, logits only at each prompt's last
token; a long prefix that every prompt shares is prefilled once, its cache kept for the next call, and decoded
against as one batch-shared copy), copy each prompt's KV cache into its `n` sample rows, then a compiled
`lax.while_loop` that samples, checks EOS / stop strings / length per row, and feeds the token back, until every row
has finished. The loop runs in segments of `segment_steps`; between segments the host drops finished rows once the
live ones fit a smaller batch bucket, so stopped rows cost little further work. Prompt length, batch and new-token
count are rounded up to buckets (geometric: a few per octave), so a long run of calls with varying sizes compiles a
small, bounded set of programs; each new program is logged at debug level.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.errors import UserError
from o1jax.models.decoder import KVCache, forward, lm_head
from o1jax.sampling.decode import LayerCache, decode_step, from_stacked, grow, split_params, to_stacked
from o1jax.sampling.filters import sample_tokens
from o1jax.sampling.stops import normalize_stops, stop_table, token_bytes, truncate_at_stop

log = logging.getLogger(__name__)

FINISH_REASONS = ("length", "eos", "stop")  # index = the code the compiled loop writes
LENGTH, EOS, STOP = 0, 1, 2


@dataclasses.dataclass
class Completion:
    """One sample. token_ids include the EOS token when finish_reason == "eos" (it was sampled: RL needs its
    log-probability) but text does not; with "stop", text ends at (and includes) the stop string and token_ids end
    with the token that completed it."""
    text: str
    token_ids: list[int]  # [N]
    logprobs: list[float]  # [N] log_softmax(logits)[token]: the model's distribution, before temperature/filters
    finish_reason: str  # "stop" | "eos" | "length"


PREFIX_BLOCK = 64  # shared prompt prefixes are reused in whole blocks of this many tokens
MIN_PREFIX = 128  # shorter shared prefixes are prefilled with each prompt
COMPACT_PER_OCTAVE = 2  # batch sizes after dropping finished rows: 2^k * {1, 1.5}


def bucket(n: int, floor: int = 1, per_octave: int = 2) -> int:
    """The smallest of floor * 2^k * {1, 1.5} (per_octave=2) or * {1, 1.25, 1.5, 1.75} (4) that is >= n."""
    b = floor
    while True:
        for step in range(per_octave):
            c = b + b * step // per_octave
            if c >= n:
                return c
        b *= 2


class Sampler:
    """Batched generation for one LanguageModel. Holds its compiled programs, so keep one per model."""

    def __init__(self, lm, max_batch: int = 256, segment_steps: int = 32, step_fn: str = "fast"):
        self.lm = lm
        self.cfg = lm.cfg
        self.max_batch = max_batch  # rows (prompts x n) decoded together; larger requests run in chunks
        self.segment_steps = segment_steps  # decode steps between checks for rows to drop (one host sync each)
        self.step_fn = step_fn  # "fast": sampling.decode.decode_step; "reference": decoder.forward
        self._seen: set = set()
        self._stop_tables: dict[tuple, jax.Array] = {}
        self._tok_bytes: list[bytes] | None = None
        # The config is bound here, not passed as a static argument (it is not hashable, and is fixed per model).
        self._prefill = jax.jit(functools.partial(_prefill, cfg=self.cfg), static_argnames=("drop_prefix",))
        self._split = jax.jit(split_params)
        self._split_cache = None
        self._prefix_memo = None
        # The cache is donated and returned, so the loop updates it in place: a request never holds two.
        statics = ("top_k", "greedy", "eos", "pad")
        self._start = jax.jit(_start, static_argnames=statics + ("Tn", "S"))
        self._to_layers = jax.jit(from_stacked, static_argnums=(1,))
        self._segment = jax.jit(functools.partial(_segment, cfg=self.cfg), donate_argnums=(2,),
                                static_argnames=statics + ("step_fn",))

    # ------------------------------------------------------------------------------------------------- inputs
    def encode(self, prompts, chat: bool = False) -> list[list[int]]:
        """Strings or token-id lists -> token-id lists. A string is encoded as transformers' tokenizer(text) does
        (special tokens, e.g. BOS, added); with chat=True it becomes the user message of a chat-template prompt."""
        if isinstance(prompts, str) or (len(prompts) and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        tok = self.lm.tokenizer
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                if tok is None:
                    raise UserError(f"prompt {i} is text but this model has no tokenizer; pass token-id lists")
                if chat:
                    ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                  tokenize=True)
                else:
                    ids = tok.encode(p, add_special_tokens=True)
            else:
                ids = [int(t) for t in p]
                if chat:
                    raise UserError("chat=True needs text prompts (token-id prompts are used as they are)")
            if not ids:
                raise UserError(f"prompt {i} is empty")
            if min(ids) < 0 or max(ids) >= self.cfg.vocab_size:
                raise UserError(f"prompt {i}: token ids must be in [0, {self.cfg.vocab_size})")
            out.append(ids)
        return out

    def _eos_ids(self) -> tuple[int, ...]:
        if self.lm.tokenizer is not None:
            return tuple(sorted(self.lm.tokenizer.eos_token_ids))
        e = self.cfg.eos_token_id
        return tuple(sorted(int(x) for x in (e if isinstance(e, (list, tuple)) else [e]) if x is not None))

    def _pad_id(self) -> int:
        if self.lm.tokenizer is not None:
            return self.lm.tokenizer.pad_token_id
        return int(self.cfg.pad_token_id if self.cfg.pad_token_id is not None else 0)

    def _stop_table(self, stops: tuple[tuple[str, ...], ...]) -> jax.Array:
        if stops not in self._stop_tables:
            if self._tok_bytes is None:
                self._tok_bytes = token_bytes(self.lm.tokenizer, self.cfg.vocab_size)
            t = stop_table(stops, self._tok_bytes)  # [N, V]; rows padded to a bucket (never reached) to share programs
            t = np.pad(t, ((0, bucket(t.shape[0], 8) - t.shape[0]), (0, 0)))
            self._stop_tables[stops] = jnp.asarray(t)
        return self._stop_tables[stops]

    def _params_key(self) -> tuple[tuple, tuple]:
        """(key, arrays): the identity of lm.params' arrays, for memos of things derived from them. A memo keeps
        `arrays` beside its value, so that the ids in its key cannot be reused by new arrays."""
        arrays = tuple(self.lm.params.items())
        return tuple((k, id(v)) for k, v in arrays), arrays

    def _layer_params(self):
        """split_params(lm.params), kept while lm.params holds the same arrays: the decode loop's per-layer weight
        buffers (a second copy of the layer weights, made again when the params change)."""
        key, arrays = self._params_key()
        if self._split_cache is None or self._split_cache[0] != key:
            self._split_cache = None  # drop the old copy before making the new one
            self._split_cache = (key, arrays, self._split(self.lm.params))
        return self._split_cache[2]

    def _prefix_kv(self, prefix: list[int]) -> tuple[KVCache, LayerCache]:
        """The KV cache of a shared prompt prefix, as KVCache [L, 1, P, K, Hd] (for prefill) and LayerCache (for
        decode), kept for the next request while the prefix and lm.params stay the same (an eval or a search asks
        with one long instruction prompt again and again)."""
        params_key, arrays = self._params_key()
        key = (tuple(prefix), params_key)
        if self._prefix_memo is None or self._prefix_memo[0] != key:
            self._prefix_memo = None
            self._note_compile("prefill", (1, len(prefix), 0))
            tokens = jnp.asarray([prefix], jnp.int32)
            cache, _ = self._prefill(self.lm.params, tokens, jnp.asarray([len(prefix)], jnp.int32), None)
            self._prefix_memo = (key, arrays, cache, self._to_layers(cache, len(prefix)))
        return self._prefix_memo[2:]

    def _note_compile(self, name: str, key: tuple):
        if (name, key) not in self._seen:
            self._seen.add((name, key))
            log.debug("sampling: compiling %s for %s (%d programs so far)", name, key, len(self._seen))

    # ------------------------------------------------------------------------------------------------- generate
    def generate(self, prompts, max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int = 0, n: int = 1, stop: str | Sequence[str | tuple[str, ...]] | None = None,
                 seed: int = 0, chat: bool = False, share_prefix: bool = True,
                 ignore_eos: bool = False) -> list[list[Completion]]:
        """For each prompt, n completions. temperature 0 is greedy. Sample j of prompt i is drawn from the key
        fold_in(fold_in(key(seed), i), j) (one per step), so it does not depend on batching, bucketing or the other
        prompts in the call. stop: strings, or tuples of strings that must occur in that order (see sampling.stops);
        a completion that stops ends with the stop. share_prefix=False prefills each sample's prompt separately
        (same results; for tests); ignore_eos=True samples past EOS (benchmarks)."""
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens={max_new_tokens}: must be at least 1")
        if n < 1:
            raise UserError(f"n={n}: must be at least 1")
        if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
            raise UserError(f"temperature={temperature}, top_p={top_p}, top_k={top_k}: need temperature >= 0, "
                            "0 < top_p <= 1, top_k >= 0")
        try:
            stops = normalize_stops(stop)
        except TypeError as e:
            raise UserError(str(e)) from None
        if stops and self.lm.tokenizer is None:
            raise UserError("stop strings need a tokenizer; this model has none")
        ids = self.encode(prompts, chat)
        longest = max(len(p) for p in ids) + max_new_tokens
        if longest > self.cfg.max_position_embeddings:
            raise UserError(f"prompt + max_new_tokens = {longest} exceeds the model's "
                            f"max_position_embeddings={self.cfg.max_position_embeddings}; shorten one of them")
        rows = [(p, j) for p in range(len(ids)) for j in range(n)]  # (prompt, sample) per decoded row
        out: list[list[Completion]] = [[None] * n for _ in ids]
        for c in range(0, len(rows), self.max_batch):
            chunk = rows[c:c + self.max_batch]
            done = self._generate_rows(ids, chunk, max_new_tokens, float(temperature), float(top_p), int(top_k),
                                       stops, seed, share_prefix, ignore_eos)
            for (p, j), completion in zip(chunk, done):
                out[p][j] = completion
        return out

    def _generate_rows(self, ids, rows, max_new, temperature, top_p, top_k, stops, seed, share, ignore_eos):
        """Decode one batch of (prompt, sample) rows; returns their Completions in order."""
        R = len(rows)
        prompts = sorted({p for p, _ in rows})
        P = shared_prefix_len([ids[p] for p in prompts])  # prefilled once (and kept for the next request)
        prefix, prefix_layers = self._prefix_kv(ids[prompts[0]][:P]) if P else (None, None)
        # The fast decode step attends to the shared prefix's one copy; each row's cache then holds only the slots
        # after it (slot s = position P + s). The reference step (tests) keeps the prefix in every row's cache.
        skip = P if P and self.step_fn == "fast" else 0
        shared = prefix_layers if skip else None
        ids = {p: ids[p][P:] for p in prompts}  # from here on, the part of each prompt after the shared prefix
        # the cache holds slots [0, Tp): the shared prefix, then each prompt's own tokens
        Tp = P + bucket(max(len(ids[p]) for p in prompts), 16, per_octave=8)  # prefill compute grows with padding
        Tn = bucket(max_new, 16)
        B = bucket(R)
        pad = self._pad_id()
        rows_prompt = np.asarray([p for p, _ in rows], np.int32)  # [R] which prompt each row samples
        rows_sample = np.asarray([j for _, j in rows], np.int32)  # [R] which of that prompt's samples it is
        if share and len(prompts) < R:  # some prompt has several rows: prefill it once, copy its cache
            Pb = bucket(len(prompts))
            tokens, lengths = _right_pad([ids[p] for p in prompts], Pb, Tp - P, pad)
            src = np.zeros(B, np.int32)
            src[:R] = np.searchsorted(prompts, rows_prompt)
        else:
            Pb = B
            tokens, lengths = _right_pad([ids[p] for p in rows_prompt], B, Tp - P, pad)
            src = None
        self._note_compile("prefill", (Pb, Tp, P))
        cache, logits = self._prefill(self.lm.params, jnp.asarray(tokens), jnp.asarray(lengths), prefix,
                                      drop_prefix=bool(skip))
        lengths = lengths + P  # each row's prompt length, prefix included
        if src is not None:
            self._note_compile("share_prefix", (Pb, B, Tp))
            cache, logits = _gather_rows(cache, logits, jnp.asarray(src))
            row_len = lengths[src]
        else:
            row_len = lengths
        live = np.zeros(B, bool)
        live[:R] = True
        keys = np.zeros((B, 2), np.uint32)
        keys[:R] = np.asarray(_row_keys(seed, jnp.asarray(rows_prompt), jnp.asarray(rows_sample)))
        table = self._stop_table(stops) if stops else None
        greedy = temperature == 0.0
        eos = () if ignore_eos else self._eos_ids()
        statics = dict(top_k=top_k, greedy=greedy, eos=eos, pad=pad)
        scalars = (jnp.int32(max_new), jnp.float32(temperature or 1.0), jnp.float32(top_p), table)
        if self.step_fn == "fast":
            top, layers = self._layer_params()
        else:
            top, layers = self.lm.params, None
        # Attention reads the whole cache buffer, so the buffer grows with the decode: a segment ending at step
        # `until` needs slots < Tp - skip + until - 1. Lengths come from one coarse grid (32 * 2^k * {1, 1.5}), not
        # from Tp, so that requests with different prompt lengths share their decode programs (on CPU a decode
        # program takes seconds to compile: in an eval, compiling had cost more than decoding).
        seg_len = lambda until: bucket(Tp - skip + until, 32)  # noqa: E731
        i = 1
        until = min(i + self.segment_steps, max_new)
        st = self._start(cache, logits, jnp.asarray(row_len), jnp.asarray(live), jnp.asarray(keys), *scalars,
                         Tn=Tn, S=seg_len(until), **statics)
        del cache, logits
        rows = np.arange(B)  # rows[b] = the request row that batch row b decodes (compaction reorders them)
        results: dict[int, tuple] = {}
        while True:
            i = until
            if seg_len(i) > st.cache.max_len:
                self._note_compile("grow", (len(rows), st.cache.max_len, seg_len(i)))
                st = _grow(st, seg_len(i))
            self._note_compile("decode", (len(rows), st.cache.max_len, Tn, tuple(statics.items()),
                                          None if table is None else table.shape, self.step_fn, skip))
            st = self._segment(top, layers, st, jnp.int32(i), *scalars, shared, step_fn=self.step_fn, **statics)
            done = np.asarray(st.done)
            if done.all() or i >= max_new:
                break
            # Rows that have stopped should cost nothing more: once the live rows fit a smaller batch bucket
            # (2^k * {1, 1.5}), keep only them (their caches gathered) and collect the finished rows' outputs now.
            # Each batch size is another decode program (seconds to compile on CPU, once: the persistent cache keeps
            # it), but on CPU a row costs ~1 ms of matmuls per step: at 40 rows of pseudocode paths, halving-only
            # compaction left a third of the rows dead (171 -> 227 tokens/s with the finer grid).
            alive = np.nonzero(~done)[0]
            nb = bucket(len(alive), per_octave=COMPACT_PER_OCTAVE)
            if nb < len(rows):
                self._collect(st, rows, np.nonzero(done)[0], results)
                idx = np.concatenate([alive, np.full(nb - len(alive), alive[0])])
                self._note_compile("compact", (len(rows), nb, st.cache.max_len, Tn))
                st = _compact(st, jnp.asarray(idx), jnp.asarray(np.arange(nb) >= len(alive)))
                rows = rows[idx[:len(alive)]]
            until = min(i + self.segment_steps, max_new)
        self._collect(st, rows, np.arange(len(rows)), results)
        return [self._completion(*results[r], stops) for r in range(R)]

    @staticmethod
    def _collect(st, rows, which, results):
        toks, lps, count, finish = (np.asarray(x) for x in (st.toks, st.lps, st.count, st.finish))
        for b in which:
            if b < len(rows) and rows[b] not in results:
                results[rows[b]] = (toks[b, :count[b]], lps[b, :count[b]], int(finish[b]))

    def _completion(self, toks, lps, finish, stops) -> Completion:
        reason = FINISH_REASONS[finish]
        ids = [int(t) for t in toks]
        tok = self.lm.tokenizer
        text = ""
        if tok is not None:
            text = tok.decode(ids[:-1] if reason == "eos" else ids)
            if reason == "stop":
                cut = truncate_at_stop(text, stops)
                if cut is None:  # decode() rewrote something the byte-level match saw; cut the raw bytes instead
                    raw = b"".join(self._tok_bytes[t] for t in ids).decode("utf-8", errors="replace")
                    cut = truncate_at_stop(raw, stops) or raw
                text = cut
        return Completion(text=text, token_ids=ids, logprobs=[float(x) for x in lps], finish_reason=reason)


def _right_pad(ids, rows, width, pad):
    tokens = np.full((rows, width), pad, np.int32)
    lengths = np.ones(rows, np.int32)
    for i, p in enumerate(ids):
        tokens[i, :len(p)] = p
        lengths[i] = len(p)
    return tokens, lengths


@jax.jit
def _row_keys(seed, prompt_index, sample_index):
    """-> [B, 2] uint32 key data: fold_in(fold_in(key(seed), prompt), sample)."""
    base = jax.random.key(seed)
    k = jax.vmap(lambda p, s: jax.random.fold_in(jax.random.fold_in(base, p), s))(prompt_index, sample_index)
    return jax.random.key_data(k)


def shared_prefix_len(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, rounded down to PREFIX_BLOCK (one compiled prefill per block
    count), leaving each prompt at least one token of its own; 0 when that is under MIN_PREFIX or there is one
    prompt."""
    if len(prompts) < 2:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        n = min(n, next((i for i, (a, b) in enumerate(zip(first[:n], p[:n])) if a != b), n))
    n -= n % PREFIX_BLOCK
    return n if n >= MIN_PREFIX else 0


def _prefill(params, tokens, lengths, prefix, *, cfg, drop_prefix=False):
    """tokens [Pb, Ts] right-padded, lengths [Pb]; prefix: None, or the KVCache [L, 1, P, K, Hd] of P tokens that
    come before every row's tokens. -> (cache [L, Pb, P + Ts, K, Hd], or [L, Pb, Ts, K, Hd] without the prefix's
    slots when drop_prefix; logits at each row's last token [Pb, V])."""
    Pb, Ts = tokens.shape
    P = 0 if prefix is None else prefix.max_len
    positions = jnp.broadcast_to(P + jnp.arange(Ts, dtype=jnp.int32), (Pb, Ts))
    cache = KVCache.zeros(cfg, Pb, P + Ts)
    if prefix is not None:  # every row starts from the same prefix slots
        cache = KVCache(cache.k.at[:, :, :P].set(prefix.k), cache.v.at[:, :, :P].set(prefix.v))
    hidden, cache = forward(params, tokens, positions, cfg, cache, return_hidden=True)
    last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)  # [Pb, 1, D]
    if drop_prefix:  # the decode attends to the prefix's one copy: rows keep only their own slots
        cache = KVCache(cache.k[:, :, P:], cache.v[:, :, P:])
    return cache, lm_head(params, last, cfg)[:, 0]


@jax.jit
def _gather_rows(cache, logits, src):
    """Shared prefixes: row r of the result is prompt src[r]'s prefilled cache and next-token logits."""
    return KVCache(cache.k[:, src], cache.v[:, src]), logits[src]


class DecodeState(NamedTuple):
    """What the decode loop carries; row-indexed fields can be gathered to drop finished rows."""
    i: jax.Array  # [] tokens sampled so far (same for every row)
    cache: LayerCache  # keys L x [B, K, Hd, S], values L x [B, K, S, Hd]
    tok: jax.Array  # [B] the last sampled token, fed next
    toks: jax.Array  # [B, Tn] sampled tokens (pad after a row stops)
    lps: jax.Array  # [B, Tn] their log-probabilities
    count: jax.Array  # [B] tokens generated per row
    finish: jax.Array  # [B] FINISH_REASONS index
    done: jax.Array  # [B] bool
    sstate: jax.Array  # [B] stop-string automaton state
    start: jax.Array  # [B] prompt length = position of the first new token
    keys: jax.Array  # [B, 2] uint32 per-row PRNG key data


def _record(st: DecodeState, logits, max_new, temperature, top_p, table, *, top_k, greedy, eos, pad):
    """Sample step st.i's token for every row from logits [B, V] and update stops. Finished rows keep their outputs."""
    keys = jax.random.wrap_key_data(st.keys)
    u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, st.i), (), jnp.float32))(keys)
    tok, lp = sample_tokens(logits, u, temperature, top_p, top_k, greedy)
    active = ~st.done
    toks = st.toks.at[:, st.i].set(jnp.where(active, tok, pad))
    lps = st.lps.at[:, st.i].set(jnp.where(active, lp, 0.0))
    count = st.count + active.astype(jnp.int32)
    is_eos = jnp.isin(tok, jnp.asarray(eos, jnp.int32)) if eos else jnp.zeros_like(active)
    sstate = st.sstate
    if table is not None:
        nxt = table[sstate, tok]
        hit = nxt < 0
        sstate = jnp.where(active, jnp.maximum(nxt, 0), sstate)
    else:
        hit = jnp.zeros_like(active)
    finish = jnp.where(active & is_eos, EOS, jnp.where(active & hit, STOP, st.finish))
    done = st.done | is_eos | hit | (count >= max_new)
    return st._replace(i=st.i + 1, tok=tok, toks=toks, lps=lps, count=count, finish=finish, done=done,
                       sstate=sstate)


def _start(cache, logits, start, live, keys, max_new, temperature, top_p, table, *, Tn, S, **statics):
    """cache [L, B, Tp, K, Hd] holding each row's prompt, logits [B, V] for its first new token, start [B] prompt
    lengths, live [B] (false = batch padding), keys [B, 2] -> the state after sampling the first token, its cache
    a LayerCache of S slots."""
    B = logits.shape[0]
    pad = statics["pad"]
    st = DecodeState(jnp.int32(0), from_stacked(cache, S), jnp.zeros(B, jnp.int32),
                     jnp.full((B, Tn), pad, jnp.int32), jnp.zeros((B, Tn), jnp.float32), jnp.zeros(B, jnp.int32),
                     jnp.full(B, LENGTH, jnp.int32), ~live, jnp.zeros(B, jnp.int32), start, keys)
    return _record(st, logits, max_new, temperature, top_p, table, **statics)


def _segment(params, layers, st, until, max_new, temperature, top_p, table, shared, *, cfg, step_fn, **statics):
    """Decode until step `until` or until every row has finished. The state (cache included) is donated and
    returned, so the cache is updated in place: a request never holds two. step_fn "fast": (params, layers) are
    split_params' output, and shared is None or the LayerCache of a prefix every row attends to (its positions come
    before the rows' cache slots); "reference": params are the stacked params (forward, on a stacked copy of the
    cache)."""
    def body(st):
        pos = st.start + st.i - 1  # the fed token (sampled at step i - 1) sits at its row's position
        if step_fn == "fast":
            logits, cache = decode_step(params, layers, st.tok, pos, cfg, st.cache, shared)
        else:
            logits, cache = forward(params, st.tok[:, None], pos[:, None], cfg, to_stacked(st.cache))
            cache = from_stacked(cache, cache.max_len)
            logits = logits[:, 0]
        return _record(st._replace(cache=cache), logits, max_new, temperature, top_p, table, **statics)

    return jax.lax.while_loop(lambda s: (s.i < until) & ~jnp.all(s.done), body, st)


@functools.partial(jax.jit, static_argnums=(1,))
def _grow(st: DecodeState, length: int):
    """The state with its cache buffers lengthened to `length` slots."""
    return st._replace(cache=grow(st.cache, length))


@jax.jit
def _compact(st: DecodeState, idx, pad_rows):
    """Keep rows idx [B'] of the state; pad_rows [B'] marks copies that only fill the batch bucket (done)."""
    rows = lambda x: x[idx]  # noqa: E731
    return st._replace(cache=st.cache.rows(idx), tok=rows(st.tok),
                       toks=rows(st.toks), lps=rows(st.lps), count=rows(st.count), finish=rows(st.finish),
                       done=rows(st.done) | pad_rows, sstate=rows(st.sstate), start=rows(st.start),
                       keys=rows(st.keys))
