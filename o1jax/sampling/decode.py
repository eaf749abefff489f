"""One decode step (one new token per row) for the sampling loop: the same math as models.decoder.forward with T=1,
arranged for the memory-bound case that dominates generation.

Why not just forward(T=1)? Its layer scan takes the cache as scan input and returns the updated cache as scan output,
so every step XLA copies the whole cache (read + write) on top of the attention read. Here the scan only reads the
cache: attention covers the cached slots < pos plus the new token's own key/value, and the L new key/value rows are
written back after the scan with one in-place scatter (the while loop carries the cache, donated).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from o1jax.models.config import ModelConfig
from o1jax.models.decoder import KVCache, lm_head, rms_norm
from o1jax.models.rope import apply_rope, inv_frequencies, rope_tables


def _attend(q, k_new, v_new, kc, vc, pos):
    """q [B, H, Hd]; k_new/v_new [B, K, Hd]; kc/vc [B, S, K, Hd] (slots < pos valid); pos [B] -> [B, H, Hd].

    Written as multiply-and-reduce rather than einsum: a dot_general would want the cache as [B, K, S, Hd] and XLA
    would transpose (copy) it every layer; the fused elementwise form reads it once.
    """
    B, H, Hd = q.shape
    S, K = kc.shape[1], kc.shape[2]
    G = H // K
    qg = q.reshape(B, K, G, Hd).astype(jnp.float32) / jnp.sqrt(jnp.float32(Hd))
    s_old = jnp.sum(kc.astype(jnp.float32)[:, :, :, None, :] * qg[:, None], axis=-1)  # [B, S, K, G]
    s_new = jnp.sum(k_new.astype(jnp.float32)[:, :, None, :] * qg, axis=-1)  # [B, K, G]
    valid = jnp.arange(S)[None, :] < pos[:, None]  # [B, S]
    s_old = jnp.where(valid[:, :, None, None], s_old, -jnp.inf)
    m = jnp.maximum(jnp.max(s_old, axis=1), s_new)  # [B, K, G]
    p_old = jnp.exp(s_old - m[:, None])
    p_new = jnp.exp(s_new - m)
    denom = jnp.sum(p_old, axis=1) + p_new
    o = jnp.sum(p_old[..., None] * vc.astype(jnp.float32)[:, :, :, None, :], axis=1)  # [B, K, G, Hd]
    o = (o + p_new[..., None] * v_new.astype(jnp.float32)[:, :, None, :]) / denom[..., None]
    return o.reshape(B, H, Hd).astype(q.dtype)


def decode_step(params: dict, tokens, pos, cfg: ModelConfig, cache: KVCache):
    """tokens [B] int32 at positions pos [B]; cache [L, B, S, K, Hd] holds slots < pos.

    Returns (logits [B, V] float32, cache with slot pos written in every layer)."""
    dtype = jnp.dtype(cfg.dtype)
    cos, sin = rope_tables(pos[:, None], inv_frequencies(cfg))  # [B, 1, Hd]
    x = jnp.take(params["embed"], tokens, axis=0).astype(dtype)  # [B, D]
    layer = {k.split("/", 1)[1]: v for k, v in params.items() if k.startswith("layers/")}

    def block(x, xs):
        lp, kc, vc = xs
        c = lambda name: lp[name].astype(dtype)  # noqa: E731
        h = rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
        q = jnp.einsum("bd,dhk->bhk", h, c("q"))
        k = jnp.einsum("bd,dhk->bhk", h, c("k"))
        v = jnp.einsum("bd,dhk->bhk", h, c("v"))
        if cfg.attention_bias:
            q, k, v = q + c("q_bias"), k + c("k_bias"), v + c("v_bias")
        q = apply_rope(q[:, None], cos, sin)[:, 0]
        k = apply_rope(k[:, None], cos, sin)[:, 0]
        a = _attend(q, k, v, kc, vc, pos)
        x = x + jnp.einsum("bhk,hkd->bd", a, c("o"))
        h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
        g = jnp.einsum("bd,df->bf", h, c("gate"))
        u = jnp.einsum("bd,df->bf", h, c("up"))
        x = x + jnp.einsum("bf,fd->bd", jax.nn.silu(g) * u, c("down"))
        return x, (k.astype(kc.dtype), v.astype(vc.dtype))

    x, (k_new, v_new) = jax.lax.scan(block, x, (layer, cache.k, cache.v))  # k_new/v_new [L, B, K, Hd]
    rows = jnp.arange(x.shape[0])
    cache = KVCache(cache.k.at[:, rows, pos].set(k_new), cache.v.at[:, rows, pos].set(v_new))
    x = rms_norm(x, params["final_norm"], cfg.rms_norm_eps)
    return lm_head(params, x[:, None], cfg)[:, 0], cache
