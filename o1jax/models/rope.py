"""Rotary position embeddings (HF rotate-half layout), with llama3 and linear frequency scaling."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from o1jax.models.config import ModelConfig


def inv_frequencies(cfg: ModelConfig) -> np.ndarray:
    """[Hd/2] float32, computed exactly as transformers does (float32 powers), so logits match to 1e-5."""
    Hd = cfg.head_dim
    exps = (np.arange(0, Hd, 2, dtype=np.int64).astype(np.float32) / np.float32(Hd))
    inv = (1.0 / (np.float32(cfg.rope_theta) ** exps)).astype(np.float32)
    rs = cfg.rope_scaling
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return (inv / np.float32(rs["factor"])).astype(np.float32)
    if kind == "llama3":
        factor = rs["factor"]
        low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old_ctx = rs.get("original_max_position_embeddings", 8192)
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    raise ValueError(f"rope scaling {kind!r}")


def rope_tables(positions, inv_freq):
    """positions [B, T] int -> cos, sin [B, T, Hd] float32."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]  # [B, T, Hd/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x, cos, sin):
    """x [B, T, N, Hd]; cos/sin [B, T, Hd]."""
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    xf = x.astype(jnp.float32)
    out = xf * cos[:, :, None, :] + rot.astype(jnp.float32) * sin[:, :, None, :]
    return out.astype(x.dtype)
