"""The training loop shared by every stage: load model and data, build the sharded state, resume from the newest
good checkpoint, step with progress/metrics/eval, save on the interval, on SIGTERM and at the end, export."""
from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import numpy as np

from o1jax.errors import UserError
from o1jax.training.checkpointing import (RunCheckpointer, SigtermFlag, write_export, write_resolved_once,
                                          write_run_info)
from o1jax.training.config import TrainConfig
from o1jax.training.data import Batches, load_examples
from o1jax.training.mesh import init_distributed, mesh_from_config, put_batch
from o1jax.training.state import build_trainer

log = logging.getLogger(__name__)
_STEP_DELAY_S = float(os.environ.get("O1JAX_TRAIN_STEP_DELAY_S", "0") or 0)


class MetricsLog:
    """metrics.jsonl (one object per logged step) + TensorBoard, written by process 0 only."""

    def __init__(self, run_dir: str, start_step: int, tensorboard: bool):
        self.main = jax.process_index() == 0
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.rollouts = os.path.join(run_dir, "rollouts.jsonl")  # PPO: one line per rollout
        self.tb = None
        if not self.main:
            return
        for path in (self.path, self.rollouts):
            if os.path.exists(path):  # drop entries past the restored step: they will be recomputed identically
                with open(path) as f:
                    keep = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
                with open(path, "w") as f:
                    f.writelines(keep)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=start_step + 1)
            except ImportError:
                log.warning("tensorboardX is not installed; metrics go to metrics.jsonl only")

    def write(self, step: int, metrics: dict, prefix: str = ""):
        if not self.main:
            return
        row = {"step": step, **{prefix + k: v for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(prefix + k, v, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def _host(metrics) -> dict:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def _token_count(batch: dict) -> int:
    return int(np.asarray(batch["segment_ids"] > 0).sum())


def setup(kind: str, model: str, tcfg: TrainConfig, run_dir: str):
    """Mesh, model and an empty trainer (not yet restored)."""
    init_distributed(tcfg.mesh)
    import o1jax
    mesh = mesh_from_config(tcfg.mesh)
    lm = o1jax.load_model(model, mesh=mesh, param_dtype="float32")
    plus = minus = 0
    if kind == "prm" and tcfg.prm.kind == "generative":
        from o1jax.training.data import Encoder
        enc = Encoder(lm.tokenizer, tcfg.data)
        plus = enc.single_token(tcfg.prm.plus_token, "prm.plus_token")
        minus = enc.single_token(tcfg.prm.minus_token, "prm.minus_token")
    trainer = build_trainer(kind, tcfg, lm.cfg, lm.params, mesh, plus, minus)
    return mesh, lm, trainer


def start_execution_service(workers: int | None = None, allow_weaker: bool = False):
    """The sandboxed execution service PPO rewards come from. Start it before JAX initialises a backend (the
    process that forks sandboxes stays small and single-threaded)."""
    from o1jax.execution import ExecutionService
    try:
        return ExecutionService(workers=workers, allow_weaker=allow_weaker)
    except Exception as e:  # noqa: BLE001  SandboxUnavailable says what is missing and which flag opts in
        raise UserError(f"execution service: {str(e).splitlines()[0]}") from None


def train(kind: str, model: str, data: str, run_dir: str, tcfg: TrainConfig, service=None) -> int:
    """Run (or resume) one training stage. Returns a process exit code (0 done, 143 stopped by SIGTERM).
    PPO: `service` is the ExecutionService to judge rollouts with (started here, before the model loads, when
    None); with ppo.process_rewards the PRM run ppo.prm_model scores the reasoning steps."""
    if kind == "ppo" and service is None:
        with start_execution_service() as svc:
            return train(kind, model, data, run_dir, tcfg, service=svc)
    run_dir = os.path.abspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    mesh, lm, trainer = setup(kind, model, tcfg, run_dir)
    examples = load_examples(kind, data, lm.tokenizer, tcfg)
    eval_examples = load_examples(kind, tcfg.data.eval_file, lm.tokenizer, tcfg) if tcfg.data.eval_file else None
    src = os.path.abspath(model) if os.path.exists(model) else model
    write_run_info(run_dir, {"kind": kind, "model_source": src, "lora": tcfg.lora.enabled,
                             "lora_scale": trainer.spec.lora_scale, "data": os.path.abspath(data)},
                   lm.cfg, lm.tokenizer)
    write_resolved_once(tcfg, run_dir)
    ck = RunCheckpointer(run_dir, tcfg.checkpoint.every, tcfg.checkpoint.keep, tcfg.checkpoint.async_save)
    start = 0
    restored = ck.restore(trainer.state)
    if restored is not None:
        trainer.state, meta = restored
        start = int(np.asarray(trainer.state["step"]))
        if meta.get("num_examples") not in (None, len(examples)) and kind != "ppo":
            log.warning("%s: data now has %d examples, the checkpoint saw %s; the data order will differ",
                        data, len(examples), meta.get("num_examples"))
        print(f"resuming {run_dir} from step {start}", flush=True)
    if kind == "ppo":
        from o1jax.training.ppo import PPORunner
        scorer = None
        if tcfg.ppo.process_rewards:
            from o1jax.training.prm_scorer import load_step_scorer
            scorer = load_step_scorer(tcfg.ppo.prm_model, mesh)
        stepper = PPORunner(trainer, lm, examples, tcfg, service, scorer)
    else:
        batches = Batches(examples, tcfg.train.batch_size, tcfg.data.max_length, tcfg.train.seed,
                          tcfg.data.shuffle, packed=tcfg.data.pack and kind in ("sft", "prm"))
        stepper = None
    mlog = MetricsLog(run_dir, start, tcfg.train.tensorboard)
    sig = SigtermFlag(tcfg.checkpoint.save_on_sigterm)
    total = tcfg.train.steps
    bar = _progress(total, start, tcfg.train.progress)
    rc = 0
    try:
        tokens_since, t0 = 0, time.perf_counter()
        for step in range(start, total):
            if stepper is not None:
                metrics, ntok = stepper.step(step)
                stepper.write_log(mlog.rollouts, step + 1)
                position = stepper.position(step + 1)
            else:
                host_batch = batches.batch(step)
                metrics = trainer.step(put_batch(host_batch, mesh))
                ntok = _token_count(host_batch)
                position = batches.position(step + 1)
            tokens_since += ntok
            done = step + 1
            if done % tcfg.train.log_every == 0 or done == total:
                m = _host(metrics)
                dt = time.perf_counter() - t0
                m["tokens_per_s"] = tokens_since / max(dt, 1e-9)
                m["lr"] = float(_lr(trainer, step))
                mlog.write(done, m)
                _bar_update(bar, done, m)
                tokens_since, t0 = 0, time.perf_counter()
            if eval_examples is not None and tcfg.eval.every and done % tcfg.eval.every == 0:
                mlog.write(done, evaluate(trainer, eval_examples, tcfg, mesh, kind), prefix="eval/")
            ck.save(done, trainer.state, position)
            if _STEP_DELAY_S:  # test hook: slow the loop so a test can kill it mid-run
                time.sleep(_STEP_DELAY_S)
            if sig.should_stop(done):
                ck.save(done, trainer.state, position, force=True)
                ck.wait()
                print(f"\nSIGTERM: saved step {done} in {ck.dir}; rerun the same command to resume", flush=True)
                rc = 143
                break
        else:
            final = max(total, start)
            pos = stepper.position(final) if stepper is not None else batches.position(final)
            ck.save(final, trainer.state, pos, force=True)
            ck.wait()
            write_export(run_dir, final, lm.cfg, trainer.merged_params(), lm.tokenizer)
    finally:
        if bar is not None:
            bar.close()
        ck.wait()
        ck.close()
        mlog.close()
        sig.restore()
    return rc


def _lr(trainer, step: int):
    from o1jax.training.state import make_schedule
    return make_schedule(trainer.cfg.optim, trainer.cfg.train.steps)(step)


def evaluate(trainer, examples, tcfg, mesh, kind) -> dict:
    """Mean metrics over the first eval.batches batches of the eval file (fixed order)."""
    if kind == "ppo":
        return {}
    b = Batches(examples, tcfg.train.batch_size, tcfg.data.max_length, seed=0, shuffle=False)
    n = min(tcfg.eval.batches, max(1, math.ceil(len(b) / tcfg.train.batch_size)))
    acc: dict = {}
    for i in range(n):
        m = _host(trainer.eval_fn(trainer.state, trainer.frozen, put_batch(b.batch(i), mesh)))
        for k, v in m.items():
            acc[k] = acc.get(k, 0.0) + v / n
    return acc


def _progress(total: int, start: int, enabled: bool):
    if not enabled or jax.process_index() != 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc="train")


def _bar_update(bar, done: int, m: dict):
    if bar is None:
        return
    bar.n = done
    bar.set_postfix(loss=f"{m.get('loss', float('nan')):.4f}", tok_s=f"{m['tokens_per_s']:.0f}", refresh=False)
    bar.refresh()
