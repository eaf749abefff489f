"""PPO rollouts for the RL step of the o1-Coder loop: sample a completion per prompt with the current policy
(o1jax.sampling), run its code on the problem's tests (o1jax.execution), place rewards on tokens (the outcome reward R
on the last token; process rewards r^j on the token ending reasoning step j when a step scorer is given), then
old/reference log-probs and values, GAE, and `ppo.epochs` updates of the compiled PPO step (training.steps)."""
from __future__ import annotations

import logging

import jax
import numpy as np

from o1jax.training.data import Encoder, collate
from o1jax.training.mesh import put_batch
from o1jax.training.steps import ppo_advantages

log = logging.getLogger(__name__)


def step_end_token_indices(token_ids: list[int], tokenizer, delimiter: str) -> list[int]:
    """Indices of the completion tokens that complete each occurrence of the step delimiter."""
    if not delimiter:
        return []
    out, count = [], 0
    for i in range(len(token_ids)):  # O(n^2) decode, fine for a few hundred tokens per rollout
        c = tokenizer.decode(token_ids[: i + 1]).count(delimiter)
        if c > count:
            out.append(i)
            count = c
    return out


def place_rewards(n_prompt: int, n_completion: int, outcome: float, process: list[tuple[int, float]],
                  length: int) -> np.ndarray:
    """Per-target-position rewards [length]: target index of completion token i is n_prompt - 1 + i."""
    r = np.zeros(length, np.float32)
    for i, v in process:
        r[n_prompt - 1 + i] += v
    if n_completion:
        r[n_prompt - 1 + n_completion - 1] += outcome
    return r


class PPORunner:
    """One PPO iteration per training step over a deterministic batch of prompts."""

    def __init__(self, trainer, lm, examples: list[dict], tcfg, step_scorer=None, service=None):
        self.tr, self.lm, self.examples, self.cfg = trainer, lm, examples, tcfg
        self.enc = Encoder(lm.tokenizer, tcfg.data)
        self.step_scorer = step_scorer  # (prompt, [step texts]) -> [r^j]; e.g. a trained PRM
        self._svc = service
        self._adv = jax.jit(lambda b: ppo_advantages(tcfg.ppo, b))

    @property
    def svc(self):
        if self._svc is None:
            from o1jax.execution import ExecutionService
            self._svc = ExecutionService()
        return self._svc

    def indices(self, step: int) -> list[int]:
        n, B = len(self.examples), self.cfg.train.batch_size
        out = []
        for pos in range(step * B, (step + 1) * B):
            perm = np.random.default_rng([self.cfg.train.seed, pos // n]).permutation(n)
            out.append(int(perm[pos % n]))
        return out

    def position(self, step: int) -> dict:
        B = self.cfg.train.batch_size
        return {"examples_seen": step * B, "epoch": step * B // len(self.examples), "num_examples": len(self.examples)}

    def rollout(self, step: int):
        from o1jax.data.extraction import extract_code
        from o1jax.execution.rewards import outcome_reward
        p = self.cfg.ppo
        exs = [self.examples[i] for i in self.indices(step)]
        self.lm.params = self.tr.merged_params()  # sample from the current policy
        prompt_ids = [self.enc.prompt(e["prompt"]) for e in exs]
        comps = self.lm.generate(prompt_ids, max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                 top_p=p.top_p, top_k=p.top_k, n=1, seed=self.cfg.train.seed * 1_000_003 + step)
        comps = [c[0] for c in comps]
        jobs = []
        for i, (e, c) in enumerate(zip(exs, comps)):
            code = extract_code(c.text)
            if code is not None:
                jobs.append({"id": str(i), "program": code, "tests": e["tests"], "timeout_s": p.exec_timeout_s,
                             "memory_mb": p.exec_memory_mb})
        results = {r["id"]: r for r in self.svc.run(jobs)} if jobs else {}
        rows, outcomes = [], []
        for i, (e, ids, c) in enumerate(zip(exs, prompt_ids, comps)):
            R = outcome_reward(results.get(str(i)))
            outcomes.append(R)
            resp = list(c.token_ids)[: max(self.cfg.data.max_length + 1 - len(ids), 1)]
            ids = ids[-(self.cfg.data.max_length + 1 - len(resp)):]
            process = []
            if self.step_scorer is not None and p.process_rewards:
                ends = step_end_token_indices(resp, self.lm.tokenizer, p.step_delimiter)
                texts, start = [], 0
                for j in ends:
                    texts.append(self.lm.tokenizer.decode(resp[start:j + 1]))
                    start = j + 1
                process = list(zip(ends, self.step_scorer(e["prompt"], texts))) if texts else []
            seq = np.array(ids + resp, np.int32)
            n = len(seq) - 1
            rows.append({"inputs": seq[:-1], "targets": seq[1:],
                         "loss_mask": (np.arange(n) >= len(ids) - 1).astype(np.float32),
                         "rewards": place_rewards(len(ids), len(resp), R, process, n)})
        return collate(rows, self.cfg.data.max_length), outcomes

    def step(self, step: int):
        host, outcomes = self.rollout(step)
        batch = put_batch(host, self.tr.mesh)
        old_logp, ref_logp, values = self.tr.rollout_stats_fn(self.tr.state["params"], self.tr.frozen, batch)
        batch = self._adv({**batch, "old_logp": old_logp, "ref_logp": ref_logp, "old_values": values})
        for _ in range(self.cfg.ppo.epochs):
            metrics = self.tr.step(batch)
        metrics = dict(metrics, outcome_reward=float(np.mean(outcomes)))
        return metrics, int(host["loss_mask"].sum())
