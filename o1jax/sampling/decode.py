"""One decode step (one new token per row) for the sampling loop: the same math as models.decoder.forward with T=1,
arranged for the memory-bound case that dominates generation.

Why not forward(T=1), or a layer scan? Measured on CPU (XLA's CPU matmuls and reductions are library fusions that
cannot read a slice of a larger buffer), a scan over stacked layers copies each layer's weights and each layer's
cache slice out of the stacked arrays at every step: more memory traffic than the matmuls and the attention
themselves. So the decode loop works on per-layer buffers instead:

  * the weights are split into per-layer arrays once per request (`split_params`), and the step's layer loop is
    unrolled, so every matmul reads its weight in place;
  * the cache is one buffer per layer for keys, [B, K, Hd, S], and one for values, [B, K, S, Hd] (`LayerCache`;
    kv-head-major, keys transposed, so that both attention matmuls read their cache operand in its natural
    layout: with keys as [B, K, S, Hd] the scores matmul ran about 1.3x slower on CPU). Each layer writes its new
    key/value into its buffers (in place: the while loop carries them, donated) and then attends over the whole
    buffer, masked to slots <= pos;
  * the buffers are only as long as the current segment of the decode loop needs (`grow` lengthens them between
    segments), so attention reads about the filled prefix of the cache, not the request's maximum length.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from o1jax.models.config import ModelConfig
from o1jax.models.decoder import KVCache, lm_head, rms_norm
from o1jax.models.rope import apply_rope, inv_frequencies, rope_tables


class LayerCache(NamedTuple):
    k: tuple  # L x [B, K, Hd, S]
    v: tuple  # L x [B, K, S, Hd]

    @property
    def max_len(self) -> int:
        return self.v[0].shape[2]

    def rows(self, idx) -> "LayerCache":
        """Rows idx [B'] of every layer's buffers."""
        return LayerCache(tuple(x[idx] for x in self.k), tuple(x[idx] for x in self.v))


def split_params(params: dict) -> tuple[dict, tuple]:
    """Stacked params -> (the non-layer params, one dict of unstacked weights per layer). Jit it: one copy."""
    top = {k: v for k, v in params.items() if not k.startswith("layers/")}
    stacked = {k.split("/", 1)[1]: v for k, v in params.items() if k.startswith("layers/")}
    L = next(iter(stacked.values())).shape[0]
    return top, tuple({k: v[i] for k, v in stacked.items()} for i in range(L))


def from_stacked(cache: KVCache, length: int) -> LayerCache:
    """KVCache [L, B, S, K, Hd] -> LayerCache of `length` slots (the first min(S, length) copied, the rest zero)."""
    def one(x):  # [B, S, K, Hd] -> [B, K, length, Hd]
        x = jnp.swapaxes(x, 1, 2)[:, :, :length]
        return jnp.pad(x, ((0, 0), (0, 0), (0, length - x.shape[2]), (0, 0)))
    return LayerCache(tuple(jnp.swapaxes(one(x), 2, 3) for x in cache.k), tuple(one(x) for x in cache.v))


def to_stacked(cache: LayerCache) -> KVCache:
    return KVCache(jnp.stack([jnp.transpose(x, (0, 3, 1, 2)) for x in cache.k]),
                   jnp.stack([jnp.swapaxes(x, 1, 2) for x in cache.v]))


def grow(cache: LayerCache, length: int) -> LayerCache:
    """Pad every buffer to `length` slots (the new slots are zero and masked until written)."""
    n = length - cache.max_len
    return LayerCache(tuple(jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, n))) for x in cache.k),
                      tuple(jnp.pad(x, ((0, 0), (0, 0), (0, n), (0, 0))) for x in cache.v))


def _attend(q, kc, vc, pos):
    """q [B, H, Hd]; kc [B, K, Hd, S], vc [B, K, S, Hd] (slots <= pos valid, the current token's included);
    pos [B] -> [B, H, Hd]."""
    B, H, Hd = q.shape
    K, S = vc.shape[1], vc.shape[2]
    qg = q.reshape(B, K, H // K, Hd).astype(jnp.float32) / jnp.sqrt(jnp.float32(Hd))
    s = jnp.einsum("bkgd,bkds->bkgs", qg, kc.astype(jnp.float32), preferred_element_type=jnp.float32)
    valid = jnp.arange(S)[None, :] <= pos[:, None]  # [B, S]
    s = jnp.where(valid[:, None, None, :], s, -jnp.inf)
    p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
    o = jnp.einsum("bkgs,bksd->bkgd", p, vc.astype(jnp.float32), preferred_element_type=jnp.float32)
    o = o / jnp.sum(p, axis=-1)[..., None]
    return o.reshape(B, H, Hd).astype(q.dtype)


def decode_step(top: dict, layers: tuple, tokens, pos, cfg: ModelConfig, cache: LayerCache):
    """tokens [B] int32 at positions pos [B] (< cache.max_len); (top, layers) from split_params; cache holds slots
    < pos. Returns (logits [B, V] float32, cache with slot pos written in every layer)."""
    dtype = jnp.dtype(cfg.dtype)
    cos, sin = rope_tables(pos[:, None], inv_frequencies(cfg))  # [B, 1, Hd]
    x = jnp.take(top["embed"], tokens, axis=0).astype(dtype)  # [B, D]
    rows = jnp.arange(x.shape[0])
    new_k, new_v = [], []
    for lp, kc, vc in zip(layers, cache.k, cache.v):
        c = lambda name: lp[name].astype(dtype)  # noqa: E731
        h = rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
        q = jnp.einsum("bd,dhk->bhk", h, c("q"))
        k = jnp.einsum("bd,dhk->bhk", h, c("k"))
        v = jnp.einsum("bd,dhk->bhk", h, c("v"))
        if cfg.attention_bias:
            q, k, v = q + c("q_bias"), k + c("k_bias"), v + c("v_bias")
        q = apply_rope(q[:, None], cos, sin)[:, 0]
        k = apply_rope(k[:, None], cos, sin)[:, 0]
        # write first, then attend over the buffer: the write is in place and nothing reads the old buffer
        kc = kc.at[rows, :, :, pos].set(k.astype(kc.dtype))
        vc = vc.at[rows, :, pos].set(v.astype(vc.dtype))
        new_k.append(kc)
        new_v.append(vc)
        a = _attend(q, kc.astype(dtype), vc.astype(dtype), pos)
        x = x + jnp.einsum("bhk,hkd->bd", a, c("o"))
        h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
        g = jnp.einsum("bd,df->bf", h, c("gate"))
        u = jnp.einsum("bd,df->bf", h, c("up"))
        x = x + jnp.einsum("bf,fd->bd", jax.nn.silu(g) * u, c("down"))
    x = rms_norm(x, top["final_norm"], cfg.rms_norm_eps)
    return lm_head(top, x[:, None], cfg)[:, 0], LayerCache(tuple(new_k), tuple(new_v))
