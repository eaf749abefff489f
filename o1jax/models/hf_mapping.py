"""The Hugging Face <-> o1jax weight mapping: one declarative table, read forwards on import and backwards on
export. Each row: HF key pattern ({i} = layer), our path, and a layout transform with its exact inverse."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from o1jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Layout:
    """HF tensor <-> our tensor for one layer slice. `to_ours(a, cfg)` and `to_hf(a, cfg)` are inverses."""
    name: str
    to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
    to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]


SAME = Layout("same", lambda a, c: a, lambda a, c: a)
# torch Linear [out, in] <-> ours [in, out]
LINEAR = Layout("linear", lambda a, c: a.T, lambda a, c: a.T)
# [H*Hd, D] -> [D, H, Hd]  (q; k/v use kv heads)
Q_IN = Layout("q", lambda a, c: a.T.reshape(c.hidden_size, c.num_heads, c.head_dim),
              lambda a, c: a.reshape(c.hidden_size, -1).T)
KV_IN = Layout("kv", lambda a, c: a.T.reshape(c.hidden_size, c.num_kv_heads, c.head_dim),
               lambda a, c: a.reshape(c.hidden_size, -1).T)
# o_proj [D, H*Hd] -> [H, Hd, D]
O_OUT = Layout("o", lambda a, c: a.T.reshape(c.num_heads, c.head_dim, c.hidden_size),
               lambda a, c: a.reshape(-1, c.hidden_size).T)
Q_BIAS = Layout("q_bias", lambda a, c: a.reshape(c.num_heads, c.head_dim), lambda a, c: a.reshape(-1))
KV_BIAS = Layout("kv_bias", lambda a, c: a.reshape(c.num_kv_heads, c.head_dim), lambda a, c: a.reshape(-1))

# (HF key, our path, layout). Rows whose our-path is absent from weight_specs(cfg) are skipped (bias, lm_head).
HF_TABLE: list[tuple[str, str, Layout]] = [
    ("model.embed_tokens.weight", "embed", SAME),
    ("model.layers.{i}.input_layernorm.weight", "layers/attn_norm", SAME),
    ("model.layers.{i}.self_attn.q_proj.weight", "layers/q", Q_IN),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers/k", KV_IN),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers/v", KV_IN),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers/q_bias", Q_BIAS),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers/k_bias", KV_BIAS),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers/v_bias", KV_BIAS),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers/o", O_OUT),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers/mlp_norm", SAME),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers/gate", LINEAR),
    ("model.layers.{i}.mlp.up_proj.weight", "layers/up", LINEAR),
    ("model.layers.{i}.mlp.down_proj.weight", "layers/down", LINEAR),
    ("model.norm.weight", "final_norm", SAME),
    ("lm_head.weight", "lm_head", LINEAR),
]

# Keys HF checkpoints may carry that o1jax deliberately does not use.
IGNORED_HF_KEYS = ("rotary_emb.inv_freq",)


def hf_keys(cfg: ModelConfig, pattern: str) -> list[str]:
    return [pattern.format(i=i) for i in range(cfg.num_layers)] if "{i}" in pattern else [pattern]
