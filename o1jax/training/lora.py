"""LoRA adapters for any training stage (the paper: TCG rank 1 on all projections, PRM rank 8 / alpha 32 on q and v).

A target weight W (stacked over layers, e.g. q [L, D, H, Hd]) gets a [L, *in, r] and b [L, r, *out]; the step uses
W + (alpha / r) * a @ b. We merge inside the jitted step rather than threading adapters through the decoder: the
decoder stays one pure function, the merged weight is what export writes anyway, and the extra cost is one
rank-r product per weight per step. b starts at zero, so step 0 is exactly the base model (and the frozen base is
the DPO/PPO reference policy for free).

LoRA dropout (reference PRM: 0.1) zeroes input features of the adapter path: W + (alpha / r) * (m * a / (1 - p)) @ b
with m ~ Bernoulli(1 - p) over a's input dims, drawn per layer and per micro-batch from the step's RNG, in training
steps only (eval, rollouts and export use the plain merge). PEFT draws m per token; a per-token mask cannot live in
a merged weight (it would need the adapter path inside the decoder), so ours is shared by the tokens of one
micro-batch. Same expectation, same features dropped, coarser noise."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from o1jax.models.config import ModelConfig
from o1jax.models.spec import WeightSpec, weight_specs

# weight -> number of leading (after `layers`) input dims; the rest are output dims
_IN_DIMS = {"q": 1, "k": 1, "v": 1, "o": 2, "gate": 1, "up": 1, "down": 1}
PREFIX = "lora/"


def lora_specs(cfg: ModelConfig, rank: int, targets) -> dict[str, WeightSpec]:
    """{'lora/q/a': spec, 'lora/q/b': spec, ...}; logical axis 'lora_rank' is replicated (training.mesh rules)."""
    base = weight_specs(cfg)
    out = {}
    for t in targets:
        s = base[f"layers/{t}"]
        k = 1 + _IN_DIMS[t]
        out[f"{PREFIX}{t}/a"] = WeightSpec((s.shape[0], *s.shape[1:k], rank), (s.axes[0], *s.axes[1:k], "lora_rank"),
                                           "lora_a")
        out[f"{PREFIX}{t}/b"] = WeightSpec((s.shape[0], rank, *s.shape[k:]), (s.axes[0], "lora_rank", *s.axes[k:]),
                                           "zeros")
    return out


def init_lora(specs: dict[str, WeightSpec], key, shardings: dict | None = None) -> dict[str, jax.Array]:
    out = {}
    for i, (path, s) in enumerate(sorted(specs.items())):
        if s.init == "zeros":
            fn = lambda k, s=s: jnp.zeros(s.shape, jnp.float32)
        else:  # kaiming-like: std 1/sqrt(fan_in)
            fan_in = math.prod(s.shape[1:-1])
            fn = lambda k, s=s, f=fan_in: jax.random.normal(k, s.shape, jnp.float32) / math.sqrt(f)
        out[path] = jax.jit(fn, out_shardings=(shardings or {}).get(path))(jax.random.fold_in(key, i))
    return out


def lora_delta(a, b):
    """a [L, *in, r], b [L, r, *out] -> [L, *in, *out] (float32)."""
    L, r = a.shape[0], a.shape[-1]
    in_shape, out_shape = a.shape[1:-1], b.shape[2:]
    d = jnp.einsum("lir,lro->lio", a.reshape(L, -1, r).astype(jnp.float32), b.reshape(L, r, -1).astype(jnp.float32))
    return d.reshape(L, *in_shape, *out_shape)


def dropout_adapters(lora: dict, rate: float, key) -> dict:
    """a [L, *in, r] -> a * m / (1 - rate), m ~ Bernoulli(1 - rate) of shape [L, *in] (one draw per target)."""
    out = dict(lora)
    for i, name in enumerate(sorted(k for k in lora if k.endswith("/a"))):
        a = lora[name]
        keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate, a.shape[:-1])
        out[name] = a * (keep[..., None].astype(a.dtype) / (1.0 - rate))
    return out


def merge(params: dict, lora: dict, scale: float, dropout: float = 0.0, key=None) -> dict:
    """Base params + scale * a @ b on every adapted weight (returns a new flat dict; params' dtypes are kept).
    With dropout > 0 and a key (training steps), the adapters' input features are dropped first."""
    if dropout > 0.0 and key is not None:
        lora = dropout_adapters(lora, dropout, key)
    out = dict(params)
    for key_ in lora:
        if not key_.endswith("/a"):
            continue
        t = key_[len(PREFIX):-2]
        w = params[f"layers/{t}"]
        out[f"layers/{t}"] = (w.astype(jnp.float32) + scale * lora_delta(lora[key_], lora[f"{PREFIX}{t}/b"])
                              ).astype(w.dtype)
    return out


def scale(rank: int, alpha: float) -> float:
    return float(alpha) / float(rank)
