"""The PRM rho of the RL step (Algorithm 1, step 5): scores every reasoning-step prefix of a rollout, r^j, with a
run of `o1jax train prm` (point-wise or pair-wise scalar head, or the reference code's generative "+"/"-" PRM).

A path is encoded exactly as PRM training encoded it (training.data: prompt, then each step + data.step_separator,
plus the rating tag for a generative PRM), so one causal forward scores all prefixes at once: the score at the last
token of step j has read the question and steps 1..j only. r^j = sigmoid(head) for scalar heads (the point-wise
BCE's probability that the prefix is valid), P("+") / (P("+") + P("-")) for the generative PRM."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.errors import UserError


def _prm_config(run_dir: str):
    from o1jax.config import _set
    from o1jax.training.config import TrainConfig
    tcfg = TrainConfig()
    path = os.path.join(run_dir, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            for section, values in json.load(f).items():
                _set(tcfg, section, values)
    return tcfg


def _head_params(run_dir: str, step: int) -> dict:
    """reward_head/{w, b} of checkpoint `step` (exports hold the decoder only)."""
    from o1jax.training.checkpointing import RunCheckpointer
    ck = RunCheckpointer(run_dir, every=0, keep=10 ** 6, async_save=False)
    try:
        params = ck.ckpt.load_checkpointables(step, {"params": None})["params"]
    finally:
        ck.close()
    flat = {}
    for k, v in params.items():  # orbax may hand back nested dicts for "reward_head/w" keys
        if isinstance(v, dict):
            flat.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    heads = {k: np.asarray(v, np.float32) for k, v in flat.items() if k.startswith("reward_head/")}
    if set(heads) != {"reward_head/w", "reward_head/b"}:
        raise UserError(f"{run_dir}: checkpoint {step} has no reward head; is it a point-/pair-wise PRM run?")
    return heads


class StepScorer:
    """(prompts [B], steps [B][m_b]) -> r [B][m_b] in [0, 1]. Built from a PRM run dir (`load_step_scorer`) or,
    in tests, from a LanguageModel + heads directly."""

    def __init__(self, lm, tcfg, heads: dict | None = None, plus_id: int = 0, minus_id: int = 0):
        from o1jax.training.data import Encoder
        self.lm, self.cfg, self.heads = lm, tcfg, heads
        self.enc = Encoder(lm.tokenizer, tcfg.data)
        self.generative = tcfg.prm.kind == "generative"
        self.tag = self.enc.text(tcfg.prm.rating_tag) if self.generative else []
        self.plus_id, self.minus_id = plus_id, minus_id
        self._fn = jax.jit(self._scores)

    def _scores(self, params, heads, batch):
        from o1jax.models.decoder import forward
        h, _ = forward(params, batch["inputs"], batch["positions"], self.lm.cfg, segment_ids=batch["segment_ids"],
                       return_hidden=True)  # [B, T, D]
        h = h.astype(jnp.float32)
        if self.generative:
            w = params["embed"] if self.lm.cfg.tie_word_embeddings else params["lm_head"].T
            pm = w[jnp.array([self.plus_id, self.minus_id])].astype(jnp.float32)  # [2, D]
            lg = jnp.einsum("btd,kd->btk", h, pm)
            return jax.nn.sigmoid(lg[..., 0] - lg[..., 1])  # [B, T]
        return jax.nn.sigmoid(jnp.einsum("btd,d->bt", h, heads["reward_head/w"]) + heads["reward_head/b"])

    def __call__(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        from o1jax.training.data import _scored_example, collate
        from o1jax.training.mesh import put_batch
        d = self.cfg.data
        rows = []
        for prompt, ss in zip(prompts, steps):
            parts = [self.enc.text(s + (d.step_separator if i < len(ss) - 1 or not self.tag else "")) + self.tag
                     for i, s in enumerate(ss)]
            rows.append(_scored_example(self.enc.prompt(prompt), parts, [0.0] * len(parts), d.max_length))
        if not any(r["score_mask"].any() for r in rows):
            return [[] for _ in rows]
        batch = collate(rows, d.max_length)
        mask = batch.pop("score_mask")
        batch = {k: batch[k] for k in ("inputs", "positions", "segment_ids")}
        dev = put_batch(batch, self.lm.mesh) if self.lm.mesh is not None else batch
        scores = np.asarray(self._fn(self.lm.params, self.heads or {}, dev))
        out = []
        for b, ss in enumerate(steps):
            got = [float(x) for x in scores[b][mask[b] > 0]]
            # a step cut off by data.max_length (the head of the prompt goes first) scores 0
            out.append(got + [0.0] * (len(ss) - len(got)))
        return out


def load_step_scorer(source: str, mesh) -> StepScorer:
    """A PRM run dir (`o1jax train prm --out RUN`) -> StepScorer on its newest good checkpoint."""
    import o1jax
    from o1jax.training.checkpointing import latest_model_dir, read_run_info
    if not source:
        raise UserError("ppo.process_rewards=true needs ppo.prm_model=RUN (a run dir of `o1jax train prm`)")
    info = read_run_info(source) if os.path.isdir(source) else None
    if info is None or info.get("kind") != "prm":
        raise UserError(f"ppo.prm_model={source!r}: not a PRM run dir (expected the --out of `o1jax train prm`)")
    tcfg = _prm_config(source)
    model_dir = latest_model_dir(source)
    if model_dir is None:
        raise UserError(f"ppo.prm_model={source!r}: the run has no checkpoint yet")
    lm = o1jax.load_model(model_dir, mesh=mesh, param_dtype="float32")
    step = int(os.path.basename(model_dir).rsplit("_", 1)[1])
    if tcfg.prm.kind == "generative":
        from o1jax.training.data import Encoder
        enc = Encoder(lm.tokenizer, tcfg.data)
        return StepScorer(lm, tcfg, plus_id=enc.single_token(tcfg.prm.plus_token, "prm.plus_token"),
                          minus_id=enc.single_token(tcfg.prm.minus_token, "prm.minus_token"))
    return StepScorer(lm, tcfg, heads=_head_params(source, step))
