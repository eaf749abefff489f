"""Devices for training: `jax.distributed` start-up on multi-host slices, the (data, fsdp, tensor) mesh from the
config, and the shardings of train state and batches, all named through the models.sharding rules table."""
from __future__ import annotations

import logging

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from o1jax.models.sharding import DEFAULT_RULES, logical_to_spec, make_mesh

log = logging.getLogger(__name__)

# Training's extra logical axes. LoRA ranks are tiny: replicate them; the pair axis of DPO / pair-wise PRM batches
# stays on one device with its pair.
TRAIN_RULES = {**DEFAULT_RULES, "lora_rank": None, "pair": None}

_initialised = False


def init_distributed(mesh_cfg) -> None:
    """jax.distributed.initialize() once, before any other JAX call, when mesh.distributed is set. On TPU pods and
    SLURM the peers are auto-detected; elsewhere pass coordinator_address, num_processes and process_id."""
    global _initialised
    if not mesh_cfg.distributed or _initialised:
        return
    kw = {}
    if mesh_cfg.coordinator_address:
        kw["coordinator_address"] = mesh_cfg.coordinator_address
    if mesh_cfg.num_processes:
        kw["num_processes"] = mesh_cfg.num_processes
    if mesh_cfg.process_id >= 0:
        kw["process_id"] = mesh_cfg.process_id
    jax.distributed.initialize(**kw)
    _initialised = True
    log.info("jax.distributed: process %d of %d, %d global devices", jax.process_index(), jax.process_count(),
             jax.device_count())


def mesh_from_config(mesh_cfg):
    return make_mesh(mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor)


def sharding_for(axes, shape, mesh) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh, TRAIN_RULES))


def spec_shardings(specs: dict, mesh) -> dict:
    """{path: WeightSpec} -> {path: NamedSharding}."""
    return {p: sharding_for(s.axes, s.shape, mesh) for p, s in specs.items()}


def batch_axes(x: np.ndarray) -> tuple:
    """Logical axes of a batch field: rows are 'batch'; [B, 2, T] pair fields have a 'pair' axis; the rest 'seq'."""
    if x.ndim == 1:
        return ("batch",)
    if x.ndim == 3:
        return ("batch", "pair", "seq")
    return ("batch", "seq")


def batch_shardings(batch: dict, mesh) -> dict:
    return {k: sharding_for(batch_axes(v), v.shape, mesh) for k, v in batch.items()}


def micro_batch_shardings(batch: dict, n_micro: int, mesh) -> dict:
    """Shardings of one micro-batch (rows / n_micro)."""
    return {k: sharding_for(batch_axes(v), (v.shape[0] // n_micro, *v.shape[1:]), mesh) for k, v in batch.items()}


def put_batch(batch: dict, mesh) -> dict:
    """Host numpy batch (the same global batch on every process) -> global jax.Arrays on their shardings. Each
    process hands over only the shards its own devices hold, so this works unchanged on multi-host slices."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        sh = sharding_for(batch_axes(v), v.shape, mesh)
        out[k] = jax.make_array_from_callback(v.shape, sh, lambda idx, v=v: v[idx])
    return out


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
