"""One declarative description per weight: shape, logical axes, initializer. The abstract param tree, the shardings
and the initial values are all derived from `weight_specs(cfg)`; nothing else lists the weights.

Layer weights are stacked on a leading `layers` axis so the decoder scans over them (compile time independent of
depth). Projections keep heads as their own axis: q [L, D, H, Hd], o [L, H, Hd, D].
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    shape: tuple[int, ...]
    axes: tuple[str | None, ...]  # logical axis names, one per dim
    init: str  # "normal" (std 0.02, fan-in scaled for projections), "ones", "zeros"


def weight_specs(cfg: ModelConfig) -> dict[str, WeightSpec]:
    """Flat {path: spec}. Paths use '/' separators; 'layers/...' entries are stacked over L."""
    L, D, F, V = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    H, K, Hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    s: dict[str, WeightSpec] = {
        "embed": WeightSpec((V, D), ("vocab", "embed"), "normal"),
        "layers/attn_norm": WeightSpec((L, D), ("layers", "norm"), "ones"),
        "layers/q": WeightSpec((L, D, H, Hd), ("layers", "embed", "heads", "head_dim"), "normal"),
        "layers/k": WeightSpec((L, D, K, Hd), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
        "layers/v": WeightSpec((L, D, K, Hd), ("layers", "embed", "kv_heads", "head_dim"), "normal"),
        "layers/o": WeightSpec((L, H, Hd, D), ("layers", "heads", "head_dim", "embed"), "normal"),
        "layers/mlp_norm": WeightSpec((L, D), ("layers", "norm"), "ones"),
        "layers/gate": WeightSpec((L, D, F), ("layers", "embed", "mlp"), "normal"),
        "layers/up": WeightSpec((L, D, F), ("layers", "embed", "mlp"), "normal"),
        "layers/down": WeightSpec((L, F, D), ("layers", "mlp", "embed"), "normal"),
        "final_norm": WeightSpec((D,), ("norm",), "ones"),
    }
    if cfg.attention_bias:
        s["layers/q_bias"] = WeightSpec((L, H, Hd), ("layers", "heads", "head_dim"), "zeros")
        s["layers/k_bias"] = WeightSpec((L, K, Hd), ("layers", "kv_heads", "head_dim"), "zeros")
        s["layers/v_bias"] = WeightSpec((L, K, Hd), ("layers", "kv_heads", "head_dim"), "zeros")
    if not cfg.tie_word_embeddings:
        s["lm_head"] = WeightSpec((D, V), ("embed", "vocab"), "normal")
    return s


def _initializer(spec: WeightSpec, dtype) -> Callable[[jax.Array], jax.Array]:
    if spec.init == "ones":
        return lambda key: jnp.ones(spec.shape, dtype)
    if spec.init == "zeros":
        return lambda key: jnp.zeros(spec.shape, dtype)
    std = 0.02
    return lambda key: (std * jax.random.normal(key, spec.shape, jnp.float32)).astype(dtype)


def init_params(cfg: ModelConfig, key: jax.Array, shardings: dict | None = None) -> dict[str, jax.Array]:
    """Random params, each created directly with its sharding (jit out_shardings), never materialised whole."""
    specs = weight_specs(cfg)
    dtype = jnp.dtype(cfg.param_dtype)
    out = {}
    for i, (path, spec) in enumerate(sorted(specs.items())):
        fn = _initializer(spec, dtype)
        sh = shardings.get(path) if shardings else None
        out[path] = jax.jit(fn, out_shardings=sh)(jax.random.fold_in(key, i))
    return out


def abstract_params(cfg: ModelConfig, shardings: dict | None = None) -> dict[str, jax.ShapeDtypeStruct]:
    dtype = jnp.dtype(cfg.param_dtype)
    return {p: jax.ShapeDtypeStruct(s.shape, dtype, sharding=(shardings or {}).get(p))
            for p, s in weight_specs(cfg).items()}


def check_shapes(cfg: ModelConfig, params: dict[str, np.ndarray], where: str):
    """Raise UserError naming the first missing or mis-shaped weight."""
    from o1jax.errors import UserError
    for path, spec in weight_specs(cfg).items():
        if path not in params:
            raise UserError(f"{where}: missing weight for {path}")
        if tuple(params[path].shape) != spec.shape:
            raise UserError(f"{where}: weight {path} has shape {tuple(params[path].shape)}, expected {spec.shape}")
