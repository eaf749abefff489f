"""Checkpoints of a training run (orbax-checkpoint v1 `training.Checkpointer`), resume, and export.

Run dir layout:
  RUN/run.json              kind, model source, LoRA settings (what export needs to rebuild the model)
  RUN/config.json           the resolved TrainConfig
  RUN/model/                o1jax_model.json + tokenizer/ of the model being trained (no params)
  RUN/checkpoints/<step>/   checkpointables: params (trainable: full weights or LoRA + heads), opt_state,
                            train (step, rng), meta (data position; JSON)
  RUN/exports/step_<n>/     a complete o1jax model dir (LoRA merged), written at the end of training or on demand
  RUN/metrics.jsonl, RUN/tb/ metrics

Saves are asynchronous (the device->host copy blocks; the write overlaps the next steps), follow an interval
(checkpoint.every), keep the newest N and also happen on SIGTERM (TPU VM preemption) and at the end. orbax writes each
step to a temporary dir and renames it when complete, so a kill -9 mid-save leaves no half checkpoint in the list; a
checkpoint damaged afterwards (truncated file) fails to restore, and we fall back to the previous one with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.errors import UserError

log = logging.getLogger(__name__)

RUN_JSON = "run.json"


def _ocp():
    from orbax.checkpoint import v1 as ocp
    return ocp


@jax.jit
def _fingerprint_arrays(tree):
    return [jnp.stack([jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.abs(x.astype(jnp.float32)))])
            for x in jax.tree.leaves(tree)]


def fingerprint(tree) -> list[float]:
    """Per-leaf (sum, sum |x|): saved in the checkpoint's meta and re-checked on restore, because a damaged data
    file does not always make orbax fail (a truncated chunk can read back as other values)."""
    return [float(v) for pair in _fingerprint_arrays(tree) for v in np.asarray(pair)]


def _verify(name: str, tree, expected) -> None:
    if expected is None:
        return
    got = fingerprint(tree)
    if len(got) != len(expected) or not np.allclose(got, expected, rtol=1e-6, atol=1e-6):
        raise ValueError(f"{name} does not match the fingerprint saved with it")


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class RunCheckpointer:
    def __init__(self, run_dir: str, every: int, keep: int, async_save: bool = True):
        ocp = _ocp()
        P = ocp.training
        self.dir = os.path.join(os.path.abspath(run_dir), "checkpoints")
        self.every = every
        self.async_save = async_save
        policy = P.save_decision_policies.FixedIntervalPolicy(every) if every > 0 else \
            P.save_decision_policies.SpecificStepsPolicy(steps=[])
        self.ckpt = P.Checkpointer(self.dir, save_decision_policy=policy,
                                   preservation_policy=P.preservation_policies.LatestN(max(keep, 1)),
                                   cleanup_tmp_directories=True)

    def steps(self) -> list[int]:
        return [int(c.step) for c in self.ckpt.checkpoints]

    def save(self, step: int, state: dict, meta: dict, force: bool = False) -> bool:
        """Save if the interval says so (or force). Returns whether a save started."""
        if not force and not self.ckpt.should_save(step):
            return False
        if step in self.steps():
            return False
        meta = dict(meta, fingerprint={"params": fingerprint(state["params"]),
                                       "opt_state": fingerprint(state["opt_state"])})
        items = {"params": state["params"], "opt_state": state["opt_state"],
                 "train": {"step": state["step"], "rng": state["rng"]}, "meta": meta}
        if self.async_save:
            self.ckpt.save_checkpointables_async(step, items, force=True)
        else:
            self.ckpt.save_checkpointables(step, items, force=True)
        return True

    def restore(self, like_state: dict):
        """Newest checkpoint that restores cleanly onto `like_state`'s shapes and shardings -> (state, meta), or
        None when the run has no checkpoint. A damaged newest checkpoint is skipped with a warning."""
        steps = sorted(self.steps(), reverse=True)
        target = {"params": _abstract(like_state["params"]), "opt_state": _abstract(like_state["opt_state"]),
                  "train": _abstract({"step": like_state["step"], "rng": like_state["rng"]}), "meta": None}
        for s in steps:
            try:
                out = self.ckpt.load_checkpointables(s, target)
                fp = (out.get("meta") or {}).get("fingerprint") or {}
                _verify("params", out["params"], fp.get("params"))
                _verify("opt_state", out["opt_state"], fp.get("opt_state"))
            except Exception as e:  # noqa: BLE001  (any failure to read = not a good checkpoint)
                msg = f"checkpoint {self.dir}/{s} is corrupt or partial ({type(e).__name__}); using the one before"
                warnings.warn(msg)
                log.warning(msg)
                continue
            state = {"params": out["params"], "opt_state": out["opt_state"], "step": out["train"]["step"],
                     "rng": out["train"]["rng"]}
            return state, dict(out.get("meta") or {}, restored_step=s)
        if steps:
            raise UserError(f"{self.dir}: no checkpoint could be restored (all of steps {steps} are damaged); "
                            "delete the run dir or pick another --out")
        return None

    def wait(self):
        self.ckpt.wait()

    def close(self):
        self.ckpt.close()


class SigtermFlag:
    """SIGTERM (preemption notice) sets a flag; the loop checks it after each step, saves and exits. Multi-host:
    the hosts agree via jax's preemption sync point so every host saves the same step."""

    def __init__(self, enabled: bool = True):
        self.flag = threading.Event()
        self._old = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.flag.set()

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            try:
                from jax.experimental import multihost_utils
                if multihost_utils.reached_preemption_sync_point(step):
                    return True
            except Exception:  # noqa: BLE001  (no preemption service: fall back to the local signal)
                pass
        return self.flag.is_set()

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


# ---------------------------------------------------------------------------------------------- run metadata
def write_run_info(run_dir: str, info: dict, model_cfg, tokenizer):
    """Once per run: what a later export needs (model config, tokenizer, LoRA settings, model source)."""
    if jax.process_index() != 0:
        return
    from o1jax.models.checkpoint import FORMAT_VERSION, MODEL_JSON
    import dataclasses
    mdir = os.path.join(run_dir, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, MODEL_JSON), "w") as f:
        json.dump({"format_version": FORMAT_VERSION, "config": dataclasses.asdict(model_cfg)}, f, indent=2)
    if tokenizer is not None and not os.path.isdir(os.path.join(mdir, "tokenizer")):
        tokenizer.save_pretrained(os.path.join(mdir, "tokenizer"))
    with open(os.path.join(run_dir, RUN_JSON), "w") as f:
        json.dump(info, f, indent=2)


def read_run_info(run_dir: str) -> dict | None:
    p = os.path.join(run_dir, RUN_JSON)
    if not os.path.isfile(p):
        return None
    with open(p) as f:
        return json.load(f)


def export_dir(run_dir: str, step: int) -> str:
    return os.path.join(os.path.abspath(run_dir), "exports", f"step_{step}")


def write_export(run_dir: str, step: int, model_cfg, merged_params: dict, tokenizer) -> str:
    """A complete o1jax model dir for `step`; o1jax_model.json is written last (save_model), so a partial export
    is never mistaken for a model."""
    from o1jax.models.checkpoint import save_model
    out = export_dir(run_dir, step)
    if os.path.isdir(out) and jax.process_index() == 0:
        shutil.rmtree(out, ignore_errors=True)
    save_model(out, model_cfg.replace(dtype="float32", param_dtype="float32"), merged_params, tokenizer)
    return out


def latest_model_dir(run_dir: str) -> str | None:
    """A training run dir -> a model dir of its newest good checkpoint (materialised under RUN/exports on first
    use: the trainable params are restored, LoRA merged into the base). None if `run_dir` is not a run."""
    from o1jax.models.checkpoint import is_model_checkpoint
    info = read_run_info(run_dir)
    if info is None or not os.path.isdir(os.path.join(run_dir, "checkpoints")):
        return None
    ck = RunCheckpointer(run_dir, every=0, keep=10 ** 6, async_save=False)
    try:
        for step in sorted(ck.steps(), reverse=True):
            out = export_dir(run_dir, step)
            if is_model_checkpoint(out):
                return out
            try:
                got = ck.ckpt.load_checkpointables(step, {"params": None, "meta": None})
                params = got["params"]
                _verify("params", params, ((got.get("meta") or {}).get("fingerprint") or {}).get("params"))
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"checkpoint {ck.dir}/{step} is corrupt or partial ({type(e).__name__}); "
                              "using the one before")
                continue
            return _materialise(run_dir, info, step, params)
    finally:
        ck.close()
    return None


def _materialise(run_dir: str, info: dict, step: int, params: dict) -> str:
    from o1jax.models.checkpoint import flatten, read_model_config
    from o1jax.models.tokenizer import Tokenizer
    from o1jax.training import lora
    cfg = read_model_config(os.path.join(run_dir, "model"))
    flat = {k: np.asarray(v) for k, v in flatten(params).items()}
    flat = {k: v for k, v in flat.items() if not k.startswith(("value_head/", "reward_head/"))}
    if info.get("lora"):
        import o1jax
        base = o1jax.load_model(info["model_source"]).params
        adapters = {k: v for k, v in flat.items() if k.startswith(lora.PREFIX)}
        flat = {k: np.asarray(v) for k, v in lora.merge(base, adapters, float(info["lora_scale"])).items()}
    tok = None
    tdir = os.path.join(run_dir, "model", "tokenizer")
    if os.path.isdir(tdir):
        from transformers import AutoTokenizer
        tok = Tokenizer(AutoTokenizer.from_pretrained(tdir), cfg.eos_token_id)
    return write_export(run_dir, step, cfg, flat, tok)


def write_resolved_once(tcfg, run_dir: str):
    """config.json of the first launch; a resumed launch with a different config is logged beside it."""
    if jax.process_index() != 0:
        return
    from o1jax.config import to_dict, write_resolved
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        write_resolved(tcfg, run_dir)
        return
    with open(path) as f:
        old = json.load(f)
    if old != json.loads(json.dumps(to_dict(tcfg))):
        log.warning("%s: this launch's config differs from the run's first; written to config.resumed.json", path)
        write_resolved(tcfg, run_dir, "config.resumed.json")
