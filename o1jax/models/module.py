"""The decoder as a Flax NNX module: a container of `nnx.Param`s (one per weight spec, carrying its logical axes)
whose __call__ is the pure `decoder.forward`. Inside jit, split it (graphdef, state) and call `forward` on the
state's flat dict: pure functions of arrays are what jit, grad and shard_map want."""
from __future__ import annotations

import jax
from flax import nnx

from o1jax.models.config import ModelConfig
from o1jax.models.decoder import KVCache, forward
from o1jax.models.spec import weight_specs


class Decoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, params: dict[str, jax.Array]):
        self.cfg = cfg
        specs = weight_specs(cfg)
        self.weights = nnx.Dict({p: nnx.Param(params[p], logical_axes=specs[p].axes) for p in specs})

    def param_dict(self) -> dict[str, jax.Array]:
        return {p: v.get_value() if hasattr(v, "get_value") else v.value for p, v in self.weights.items()}

    def __call__(self, tokens, positions, cache: KVCache | None = None, segment_ids=None):
        return forward(self.param_dict(), tokens, positions, self.cfg, cache=cache, segment_ids=segment_ids)
