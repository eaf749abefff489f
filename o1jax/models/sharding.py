"""Logical axes -> mesh axes. The one rules table below is the only place that names mesh axes; model and training
code speak in logical axes (batch, seq, embed, heads, kv_heads, mlp, vocab, layers ...)."""
from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated)
DEFAULT_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "seq": None,
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "vocab": "tensor",
    "layers": None,
    "norm": None,
    "cache_seq": None,
}


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all, every host). One size may be -1 = the rest."""
    from o1jax.errors import UserError
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise UserError(f"mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise UserError(f"mesh: {len(devices)} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise UserError(f"mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {len(devices)} devices")
    try:
        from jax.experimental import mesh_utils
        arr = mesh_utils.create_device_mesh(sizes, devices=devices)
    except Exception:  # CPU / odd topologies
        arr = np.asarray(devices).reshape(sizes)
    return Mesh(arr, MESH_AXES)


def logical_to_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: dict | None = None) -> P:
    """PartitionSpec for an array with these logical axes. A mesh axis that does not divide the dim (a 1-kv-head
    model on tensor=2, say) is dropped for that dim, and no mesh axis is used twice."""
    rules = DEFAULT_RULES if rules is None else rules
    used: set[str] = set()
    out = []
    for ax, dim in zip(axes, shape):
        target = rules.get(ax) if ax is not None else None
        names = (target,) if isinstance(target, str) else tuple(target or ())
        keep = []
        size = 1
        for n in names:
            if n in used or n not in mesh.shape:
                continue
            if dim % (size * mesh.shape[n]) == 0:
                keep.append(n)
                size *= mesh.shape[n]
        used.update(keep)
        out.append(None if not keep else keep[0] if len(keep) == 1 else tuple(keep))
    return P(*out)


def named_sharding(axes, shape, mesh: Mesh, rules: dict | None = None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh, rules))


def param_shardings(cfg, mesh: Mesh, rules: dict | None = None) -> dict[str, NamedSharding]:
    from o1jax.models.spec import weight_specs
    return {p: named_sharding(s.axes, s.shape, mesh, rules) for p, s in weight_specs(cfg).items()}
