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
    segments), so attention reads about the filled prefix of the cache, not the request's maximum length;
  * a prompt prefix that every row shares (the long instruction prompt of pseudocode reasoning, ~1,000 tokens) can
    stay out of the rows' buffers: each layer attends to its one copy (batch-shared keys and values, read once per
    step for the whole batch) and to the row's own slots, with one softmax over both. With 40 rows of ~1,500
    cached tokens each, per-row copies of the prefix were most of a decode step's memory traffic.
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


def _attend(q, kc, vc, slot, prefix=None):
    """q [B, H, Hd]; kc [B, K, Hd, S], vc [B, K, S, Hd] (slots <= slot valid, the current token's included);
    slot [B]; prefix: None or (keys [K, Hd, P], values [K, P, Hd]) of P tokens that every row attends to before its
    own slots (read once for the whole batch, not once per row) -> [B, H, Hd]."""
    B, H, Hd = q.shape
    K, S = vc.shape[1], vc.shape[2]
    qg = q.reshape(B, K, H // K, Hd).astype(jnp.float32) / jnp.sqrt(jnp.float32(Hd))
    s = jnp.einsum("bkgd,bkds->bkgs", qg, kc.astype(jnp.float32), preferred_element_type=jnp.float32)
    valid = jnp.arange(S)[None, :] <= slot[:, None]  # [B, S]
    s = jnp.where(valid[:, None, None, :], s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)  # [B, K, G, 1]
    if prefix is not None:
        sp = jnp.einsum("bkgd,kds->bkgs", qg, prefix[0].astype(jnp.float32), preferred_element_type=jnp.float32)
        m = jnp.maximum(m, jnp.max(sp, axis=-1, keepdims=True))
    p = jnp.exp(s - m)
    o = jnp.einsum("bkgs,bksd->bkgd", p, vc.astype(jnp.float32), preferred_element_type=jnp.float32)
    total = jnp.sum(p, axis=-1)
    if prefix is not None:
        pp = jnp.exp(sp - m)
        o = o + jnp.einsum("bkgs,ksd->bkgd", pp, prefix[1].astype(jnp.float32), preferred_element_type=jnp.float32)
        total = total + jnp.sum(pp, axis=-1)
    o = o / total[..., None]
    return o.reshape(B, H, Hd).astype(q.dtype)


def decode_step(top: dict, layers: tuple, tokens, pos, cfg: ModelConfig, cache: LayerCache,
                prefix: LayerCache | None = None):
    """tokens [B] int32 at positions pos [B]; (top, layers) from split_params. Without a prefix, slot s of the cache
    holds position s, slots < pos are filled and pos < cache.max_len. With prefix (a LayerCache of batch 1 holding
    positions [0, P) shared by every row), slot s holds position P + s. Returns (logits [B, V] float32, cache with
    the tokens' keys and values written in every layer)."""
    dtype = jnp.dtype(cfg.dtype)
    cos, sin = rope_tables(pos[:, None], inv_frequencies(cfg))  # [B, 1, Hd]
    x = jnp.take(top["embed"], tokens, axis=0).astype(dtype)  # [B, D]
    rows = jnp.arange(x.shape[0])
    P = 0 if prefix is None else prefix.max_len
    slot = pos - P
    new_k, new_v = [], []
    for li, (lp, kc, vc) in enumerate(zip(layers, cache.k, cache.v)):
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
        kc = kc.at[rows, :, :, slot].set(k.astype(kc.dtype))
        vc = vc.at[rows, :, slot].set(v.astype(vc.dtype))
        new_k.append(kc)
        new_v.append(vc)
        shared = None if prefix is None else (prefix.k[li][0].astype(dtype), prefix.v[li][0].astype(dtype))
        a = _attend(q, kc.astype(dtype), vc.astype(dtype), slot, shared)
        x = x + jnp.einsum("bhk,hkd->bd", a, c("o"))
        h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
        g = jnp.einsum("bd,df->bf", h, c("gate"))
        u = jnp.einsum("bd,df->bf", h, c("up"))
        x = x + jnp.einsum("bf,fd->bd", jax.nn.silu(g) * u, c("down"))
    x = rms_norm(x, top["final_norm"], cfg.rms_norm_eps)
    return lm_head(top, x[:, None], cfg)[:, 0], LayerCache(tuple(new_k), tuple(new_v))
