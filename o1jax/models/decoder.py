"""The decoder (Llama 2/3, Qwen2/2.5, SmolLM2) as a pure function of a flat param dict, plus its KV cache.

Layers are scanned over stacked params. Attention masks are built from absolute positions: cache slot == position,
a query at position p sees slots <= p (and, for packed rows, only its own segment). So a right-padded prefill of
prompts of different lengths, and one-token decodes at per-row positions, need no extra bookkeeping: the garbage a
padded prompt writes past its length sits in slots that its own later tokens overwrite before they are ever seen.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from o1jax.models.config import ModelConfig
from o1jax.models.rope import apply_rope, inv_frequencies, rope_tables


class KVCache(NamedTuple):
    k: jax.Array  # [L, B, S, K, Hd]
    v: jax.Array  # [L, B, S, K, Hd]

    @staticmethod
    def zeros(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> "KVCache":
        dtype = jnp.dtype(dtype or cfg.dtype)
        shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    @property
    def max_len(self) -> int:
        return self.k.shape[2]


CACHE_AXES = ("layers", "batch", "cache_seq", "kv_heads", "head_dim")


@jax.custom_vjp
def _dense_t(x, w):
    """x [..., Din] @ w [Din, Dout], with a backward pass that feeds XLA's CPU matmuls operands they need not
    transpose (see dense)."""
    return jnp.einsum("...d,df->...f", x, w)


def _dense_fwd(x, w):
    return _dense_t(x, w), (x, w)


def _dense_bwd(res, dy):
    x, w = res
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # [N, Din], [N, Dout]
    dx = jnp.einsum("nf,df->nd", dy2, w).reshape(x.shape)
    xt = jax.lax.optimization_barrier(x2.T)  # [Din, N]: transpose the input, not the (larger) output gradient
    dw = jnp.einsum("dn,nf->df", xt, dy2.astype(xt.dtype)).astype(w.dtype)
    return dx.astype(x.dtype), dw


_dense_t.defvjp(_dense_fwd, _dense_bwd)


def dense(x, w):
    """x [..., Din] @ w [Din, Dout] -> [..., Dout].

    On CPU, autodiff's weight gradient x^T dy made XLA transpose dy (the larger operand; for the MLP it is
    [B*T, 1536] against x's [B*T, 576]) inside the elementwise fusion that produces it, at ~8 ns per element. The
    custom backward transposes x instead, as a plain copy: a SmolLM2 SFT step (B=8, T=512, remat) went from 18.6 to
    15.4 s. Other backends get the plain einsum (unmeasured there with this backward)."""
    if jax.default_backend() == "cpu":
        return _dense_t(x, w)
    return jnp.einsum("...d,df->...f", x, w)


def rms_norm(x, w, eps):
    """x [..., D] -> same dtype; statistics in float32 as transformers does."""
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return w.astype(x.dtype) * xf.astype(x.dtype)


def _write(cache_layer, new, start):
    """cache_layer [B, S, K, Hd], new [B, T, K, Hd], start [B] -> cache with rows written at start..start+T."""
    return jax.vmap(lambda c, u, s: jax.lax.dynamic_update_slice(c, u.astype(c.dtype), (s, 0, 0)))(
        cache_layer, new, start)


def attention(q, k, v, q_pos, k_pos, q_seg=None, k_seg=None):
    """q [B, T, H, Hd], k/v [B, S, K, Hd], q_pos [B, T], k_pos [B, S] -> [B, T, H, Hd].

    q, k and v are transposed (small copies) so that both matmuls are plain batched matmuls over (b, k) with the
    query group folded into the rows: [G*T, Hd] x [Hd, S] and [G*T, S] x [S, Hd]. Written as einsums over the
    original layouts, XLA's CPU backend transposes the [B, K, G, T, S] scores instead: measured 1.5x slower for
    forward + backward (B=8, T=512) and 1.9x for forward alone (B=64, T=112).
    """
    B, T, H, Hd = q.shape
    S, K = k.shape[1], k.shape[2]
    G = H // K
    qg = q.reshape(B, T, K, G, Hd).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, Hd)
    kt = k.transpose(0, 2, 3, 1)  # [B, K, Hd, S]
    vt = v.transpose(0, 2, 1, 3)  # [B, K, S, Hd]
    scores = jnp.einsum("bkqd,bkds->bkqs", qg, kt, preferred_element_type=jnp.float32) / jnp.sqrt(
        jnp.float32(Hd))
    scores = scores.reshape(B, K, G, T, S)
    mask = k_pos[:, None, :] <= q_pos[:, :, None]  # [B, T, S]
    if q_seg is not None:
        mask &= k_seg[:, None, :] == q_seg[:, :, None]
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(B, K, G * T, S)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, vt)  # [B, K, G*T, Hd]
    return out.reshape(B, K, G, T, Hd).transpose(0, 3, 1, 2, 4).reshape(B, T, H, Hd)


def forward(params: dict, tokens, positions, cfg: ModelConfig, cache: KVCache | None = None,
            segment_ids=None, remat: bool = False, return_hidden: bool = False):
    """tokens [B, T] int, positions [B, T] int (absolute; with a cache, row b writes slots positions[b, 0] ..
    positions[b, 0] + T - 1), segment_ids [B, T] (packing, no-cache only).

    Returns (logits [B, T, V] float32, new cache or None); with return_hidden, the final normed hidden [B, T, D]
    in place of the logits (training computes the head in chunks or not at all for value heads).
    """
    dtype = jnp.dtype(cfg.dtype)
    inv_freq = inv_frequencies(cfg)
    cos, sin = rope_tables(positions, inv_freq)
    x = jnp.take(params["embed"], tokens, axis=0).astype(dtype)  # [B, T, D]
    layer = {k.split("/", 1)[1]: v for k, v in params.items() if k.startswith("layers/")}
    bias = cfg.attention_bias
    start = positions[:, 0]

    def block(x, xs):
        lp, kc, vc = xs
        c = lambda name: lp[name].astype(dtype)
        h = rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
        B, T = h.shape[:2]
        proj = lambda name: dense(h, c(name).reshape(h.shape[-1], -1)).reshape(B, T, -1, cfg.head_dim)  # noqa
        q, k, v = proj("q"), proj("k"), proj("v")
        if bias:
            q, k, v = q + c("q_bias"), k + c("k_bias"), v + c("v_bias")
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kc is not None:
            kc, vc = _write(kc, k, start), _write(vc, v, start)
            S = kc.shape[1]
            k_pos = jnp.broadcast_to(jnp.arange(S, dtype=positions.dtype)[None], (x.shape[0], S))
            a = attention(q, kc.astype(dtype), vc.astype(dtype), positions, k_pos)
        else:
            a = attention(q, k, v, positions, positions, segment_ids, segment_ids)
        x = x + dense(a.reshape(B, T, -1), c("o").reshape(-1, x.shape[-1]))
        h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
        g = dense(h, c("gate"))
        u = dense(h, c("up"))
        x = x + dense(jax.nn.silu(g) * u, c("down"))
        return x, (kc, vc)

    if remat:
        block = jax.checkpoint(block, policy=jax.checkpoint_policies.nothing_saveable)
    xs = (layer, cache.k if cache is not None else None, cache.v if cache is not None else None)
    x, (nk, nv) = jax.lax.scan(block, x, xs)
    x = rms_norm(x, params["final_norm"], cfg.rms_norm_eps)
    new_cache = KVCache(nk, nv) if cache is not None else None
    if return_hidden:
        return x, new_cache
    return lm_head(params, x, cfg), new_cache


def lm_head(params: dict, x, cfg: ModelConfig):
    """x [B, T, D] -> logits [B, T, V] float32."""
    if cfg.tie_word_embeddings:
        w = params["embed"].astype(x.dtype)
        return jnp.einsum("btd,vd->btv", x, w, preferred_element_type=jnp.float32)
    return jnp.einsum("btd,dv->btv", x, params["lm_head"].astype(x.dtype), preferred_element_type=jnp.float32)
