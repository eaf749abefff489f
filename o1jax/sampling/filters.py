"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus), as transformers' warpers do.

The sampling distribution is softmax(logits / temperature), restricted to the top_k most likely tokens (top_k > 0),
then to the nucleus: the most-likely-first tokens kept while the mass strictly ahead of them is < top_p (the most
likely token is always kept), renormalised. Each row draws one uniform per step from its own key and inverts the
CDF, so a row's draw never depends on which other rows share its batch.

The log-probability returned for each token is log_softmax(logits)[token]: the model's own distribution, before
temperature and filtering, which is what PPO ratios and DPO need.

Cost matters here (this runs once per generated token, over the whole vocabulary): no full sort and no per-token
random numbers. The nucleus is looked for among the NUCLEUS_CANDIDATES most likely tokens first; only the rows whose
nucleus is larger pay for an exact threshold search over the whole vocabulary (gathered a few rows at a time).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NUCLEUS_CANDIDATES = 64
FALLBACK_ROWS = 8  # rows per pass of the exact nucleus search
BLOCK = 256  # vocabulary block for the two-level inverse CDF over the full vocabulary


def _invert(w, u):
    """w [B, N] non-negative weights, u [B] in [0, 1) -> index [B] drawn with probability w / sum(w)."""
    c = jnp.cumsum(w, axis=-1)
    j = jnp.sum(c <= (u * c[:, -1])[:, None], axis=-1)
    last = w.shape[-1] - 1 - jnp.argmax(w[:, ::-1] > 0, axis=-1)  # rounding must never land on a zero weight
    return jnp.minimum(j, last)


def _invert_blocked(w, u):
    """Same as _invert for a vocabulary-sized w: block sums, then one block's cumsum (no V-long scan)."""
    B, V = w.shape
    nb = -(-V // BLOCK)
    wb = jnp.pad(w, ((0, 0), (0, nb * BLOCK - V))).reshape(B, nb, BLOCK)
    mass = jnp.sum(wb, axis=-1)  # [B, nb]
    c = jnp.cumsum(mass, axis=-1)
    r = u * c[:, -1]
    j = jnp.minimum(jnp.sum(c <= r[:, None], axis=-1), nb - 1 - jnp.argmax(mass[:, ::-1] > 0, axis=-1))
    inside = jnp.take_along_axis(wb, j[:, None, None], axis=1)[:, 0]  # [B, BLOCK]
    before = jnp.take_along_axis(c - mass, j[:, None], axis=1)[:, 0]
    rr = jnp.clip((r - before) / jnp.maximum(jnp.sum(inside, -1), 1e-30), 0.0, 1.0 - 1e-7)
    return j * BLOCK + _invert(inside, rr)


def _sortable(z):
    """float32 -> int32 with the same order (for an exact bisection over values)."""
    i = jax.lax.bitcast_convert_type(z, jnp.int32)
    return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)


def _nucleus_floor(z, e, top_p):
    """z [B, V] scaled logits, e [B, V] their unnormalised probabilities -> the exact nucleus as a mask [B, V]:
    tokens whose value is >= the value of the last token the sorted rule keeps (largest t with mass(z >= t) >= p)."""
    key = _sortable(z)
    target = top_p * jnp.sum(e, axis=-1)

    def step(_, lohi):  # invariant: mass(key >= lo) >= target; mass(key >= hi + 1) < target
        lo, hi = lohi
        mid = (lo >> 1) + (hi >> 1) + (((lo & 1) + (hi & 1) + 1) >> 1)  # ceil((lo + hi) / 2), no int32 overflow
        ok = jnp.sum(jnp.where(key >= mid[:, None], e, 0.0), axis=-1) >= target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo = jnp.min(key, axis=-1)
    hi = jnp.max(key, axis=-1)
    lo, _ = jax.lax.fori_loop(0, 32, step, (lo, hi))
    return key >= lo[:, None]


def _exact_nucleus_rows(tok, z, e, u, top_p, todo):
    """tok [B] drawn among the candidates; for the rows where todo [B] is set (their nucleus is larger than the
    candidate set), draw again from the exact whole-vocabulary nucleus. Those rows are gathered FALLBACK_ROWS at a
    time, so a step pays the 32-pass threshold search for the rows that need it, not for the whole batch."""
    B = z.shape[0]
    F = min(B, FALLBACK_ROWS)
    order = jnp.argsort(~todo, stable=True).astype(jnp.int32)  # rows to redo first
    order = jnp.concatenate([order, jnp.zeros(F, jnp.int32)])  # [B + F]: the last chunk may run past B
    n = jnp.sum(todo)

    def chunk(j, tok):
        rows = jax.lax.dynamic_slice(order, (j * F,), (F,))  # [F]
        real = j * F + jnp.arange(F) < n
        ez = jnp.take(e, rows, axis=0)
        w = jnp.where(_nucleus_floor(jnp.take(z, rows, axis=0), ez, top_p), ez, 0.0)
        drawn = _invert_blocked(w, jnp.take(u, rows))
        return tok.at[jnp.where(real, rows, B)].set(drawn.astype(tok.dtype), mode="drop")

    return jax.lax.fori_loop(0, (n + F - 1) // F, chunk, tok)


def sample_tokens(logits, u, temperature, top_p, top_k: int, greedy: bool):
    """logits [B, V] float32, u [B] uniforms in [0, 1); temperature/top_p scalars; top_k, greedy static.

    Returns (tokens [B] int32, logprobs [B] float32)."""
    lse = jax.nn.logsumexp(logits, axis=-1)
    if greedy:
        tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    else:
        z = logits / temperature
        V = z.shape[-1]
        c = min(top_k if top_k else NUCLEUS_CANDIDATES, V)
        # The barrier keeps XLA from folding our slices of `vals` into the top_k: CPU XLA only emits its fast
        # partial top-k for the exact sort+slice pattern, and otherwise sorts the whole vocabulary (100x slower).
        vals, idx = jax.lax.optimization_barrier(jax.lax.top_k(z, c))  # [B, c] descending
        w = jnp.exp(vals - vals[:, :1])  # [B, c] the candidates' unnormalised probabilities

        def among_candidates(total):  # total [B, 1]: the mass top_p is a fraction of, in the units of w
            ahead = jnp.cumsum(w, axis=-1) - w
            keep = (ahead < top_p * total) | (top_p >= 1.0)
            keep = keep.at[:, 0].set(True)
            return jnp.take_along_axis(idx, _invert(jnp.where(keep, w, 0.0), u)[:, None], -1)[:, 0]

        if top_k and top_k <= V:
            # top-k: the candidates are the whole support, and top-p applies to their renormalised distribution
            tok = among_candidates(jnp.sum(w, -1, keepdims=True))
        else:
            e = jnp.exp(z - vals[:, :1])  # [B, V] unnormalised sampling probabilities
            total = jnp.sum(e, -1, keepdims=True)  # [B, 1]
            covered = (jnp.sum(w, -1) >= top_p * total[:, 0]) | (c >= V)  # [B]

            def nucleus(_):
                tok = among_candidates(total)
                return _exact_nucleus_rows(tok, z, e, u, top_p, ~covered)

            tok = jax.lax.cond(top_p < 1.0, nucleus, lambda _: _invert_blocked(e, u), None)
        tok = tok.astype(jnp.int32)
    return tok, jnp.take_along_axis(logits, tok[:, None], axis=-1)[:, 0] - lse
