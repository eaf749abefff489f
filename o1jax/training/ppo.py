"""PPO rollouts for the RL step of the o1-Coder loop: sample a completion per prompt with the current policy
(o1jax.sampling), extract its code and run it on the problem's tests (o1jax.data.extract_code / make_job ->
o1jax.execution.ExecutionService), score each reasoning-step prefix with the PRM when asked (r^j), place rewards on
tokens (`ppo.reward`: "dense" = r^j on step ends and R on the last token; "aggregate" = the paper's phi(R, r^1..m) on
the last token), then old/reference log-probs and values, GAE, and `ppo.epochs` updates of the compiled PPO step."""
from __future__ import annotations

import dataclasses
import json
import logging

import jax
import numpy as np

from o1jax.data.prompting import STEP_BEGIN
from o1jax.training.data import Encoder, collate
from o1jax.training.mesh import put_batch
from o1jax.training.steps import ppo_advantages

log = logging.getLogger(__name__)
NO_CODE = "no_code"  # rollout status when the completion holds no code block (R = 0, nothing runs)


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


def step_body(segment: str, delimiter: str) -> str:
    """The text of one reasoning step as PRM data holds it: cut at the delimiter, the next step's opener
    ("<Step_Begin>\n### Step n:") dropped from its head, outer whitespace stripped."""
    body = segment.split(delimiter)[0] if delimiter else segment
    if STEP_BEGIN in body:
        body = body.split(STEP_BEGIN, 1)[1]
    head = body.lstrip("\n")
    if head.startswith("### Step ") and ":" in head.split("\n", 1)[0]:
        body = head.split(":", 1)[1]
    return body.strip()


def place_rewards(n_prompt: int, n_completion: int, outcome: float, process: list[tuple[int, float]],
                  length: int) -> np.ndarray:
    """Per-target-position rewards [length]: target index of completion token i is n_prompt - 1 + i."""
    r = np.zeros(length, np.float32)
    for i, v in process:
        r[n_prompt - 1 + i] += v
    if n_completion:
        r[n_prompt - 1 + n_completion - 1] += outcome
    return r


def token_rewards(ppo_cfg, t: int, outcome: float, process: list[tuple[int, float]]):
    """(final reward on the last token, [(token index, reward)] on step ends) for `ppo.reward`. Without process
    rewards (none asked for, or no completed step) both placements give R on the last token."""
    if ppo_cfg.reward == "aggregate" and process:
        from o1jax.execution.rewards import aggregate_reward, alpha_schedule
        a = alpha_schedule(t, ppo_cfg.alpha_start, ppo_cfg.alpha_decay, ppo_cfg.alpha_floor)
        return aggregate_reward(outcome, [v for _, v in process], t, gamma=ppo_cfg.process_gamma, alpha=a), []
    return outcome, process


@dataclasses.dataclass
class Rollout:
    """What one PPO step sampled and how it scored (per rollout, in batch order)."""
    problems: list  # o1jax.data.Problem
    completions: list[str]
    statuses: list[str]  # execution-service status, or NO_CODE
    outcome_rewards: list[float]  # R
    process_rewards: list[list[float]]  # r^1..m (empty without a PRM)
    final_rewards: list[float]  # reward on the last token: R ("dense") or phi(R, r) ("aggregate")


class PPORunner:
    """One PPO iteration per training step over a deterministic batch of prompts. `service`: an
    o1jax.execution.ExecutionService (created by the caller before JAX starts); `step_scorer`: a
    training.prm_scorer.StepScorer ((prompts, steps) -> r), used when ppo.process_rewards is set."""

    def __init__(self, trainer, lm, examples: list[dict], tcfg, service, step_scorer=None):
        self.tr, self.lm, self.examples, self.cfg = trainer, lm, examples, tcfg
        self.enc = Encoder(lm.tokenizer, tcfg.data)
        self.step_scorer = step_scorer if tcfg.ppo.process_rewards else None
        self.svc = service
        self._adv = jax.jit(lambda b: ppo_advantages(tcfg.ppo, b))
        self.last: Rollout | None = None  # the newest rollout (metrics, tests)

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

    def sample(self, step: int):
        """The step's prompts and one completion each from the current policy -> (examples, prompt ids, comps)."""
        p = self.cfg.ppo
        exs = [self.examples[i] for i in self.indices(step)]
        self.lm.params = self.tr.merged_params()  # sample from the current policy
        prompt_ids = [self.enc.prompt(e["prompt"]) for e in exs]
        comps = self.lm.generate(prompt_ids, max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                 top_p=p.top_p, top_k=p.top_k, n=1, seed=self.cfg.train.seed * 1_000_003 + step)
        return exs, prompt_ids, [c[0] for c in comps]

    def execute(self, exs: list[dict], comps) -> tuple[list[str], list[float]]:
        """Run each completion's code on its problem's tests -> (statuses, outcome rewards R)."""
        from o1jax.data import extract_code, make_job
        from o1jax.execution.rewards import outcome_reward
        p = self.cfg.ppo
        jobs = {}
        for i, (e, c) in enumerate(zip(exs, comps)):
            prob = e["problem"]
            code = extract_code(c.text, prob.entry_point, prob.starter_code)
            if code is not None:
                jobs[i] = make_job(prob, code, job_id=str(i), timeout_s=p.exec_timeout_s, memory_mb=p.exec_memory_mb)
        results = {}
        if jobs and jax.process_index() == 0:
            results = dict(zip(jobs, self.svc.run(list(jobs.values()))))
        statuses = [results[i]["status"] if i in results else NO_CODE for i in range(len(exs))]
        outcomes = [outcome_reward(results.get(i)) for i in range(len(exs))]
        if jax.process_count() > 1:  # one judge: a timeout on one host and a pass on another would split the batch
            from jax.experimental import multihost_utils

            from o1jax.execution.jobs import STATUSES
            names = list(STATUSES) + [NO_CODE]
            codes, outcomes = multihost_utils.broadcast_one_to_all(
                (np.array([names.index(x) for x in statuses], np.int32), np.array(outcomes, np.float32)))
            statuses, outcomes = [names[int(c)] for c in codes], [float(x) for x in outcomes]
        return statuses, outcomes

    def score_steps(self, exs: list[dict], resps: list[list[int]]):
        """Step-end token indices and PRM scores r^j of every rollout ([] each without a PRM)."""
        if self.step_scorer is None:
            return [[] for _ in exs], [[] for _ in exs]
        delim, tok = self.cfg.ppo.step_delimiter, self.lm.tokenizer
        ends, texts = [], []
        for resp in resps:
            e = step_end_token_indices(resp, tok, delim)
            bounds = [0] + [j + 1 for j in e]
            ends.append(e)
            texts.append([step_body(tok.decode(resp[a:b]), delim) for a, b in zip(bounds, bounds[1:])])
        scores = self.step_scorer([ex["prompt"] for ex in exs], texts)
        return ends, scores

    def build_batch(self, step: int, exs: list[dict], prompt_ids: list[list[int]], comps):
        """Rollouts -> (host batch with per-token rewards [B, T], Rollout)."""
        statuses, outcomes = self.execute(exs, comps)
        L = self.cfg.data.max_length
        resps, ids_fit = [], []
        for ids, c in zip(prompt_ids, comps):
            resp = list(c.token_ids)[: max(L + 1 - len(ids), 1)]
            resps.append(resp)
            ids_fit.append(ids[-(L + 1 - len(resp)):])
        ends, scores = self.score_steps(exs, resps)
        rows, finals = [], []
        for ids, resp, R, e, r in zip(ids_fit, resps, outcomes, ends, scores):
            final, process = token_rewards(self.cfg.ppo, step, R, list(zip(e, r)))
            finals.append(final)
            seq = np.array(ids + resp, np.int32)
            n = len(seq) - 1
            rows.append({"inputs": seq[:-1], "targets": seq[1:],
                         "loss_mask": (np.arange(n) >= len(ids) - 1).astype(np.float32),
                         "rewards": place_rewards(len(ids), len(resp), final, process, n)})
        ro = Rollout([e["problem"] for e in exs], [c.text for c in comps], statuses, outcomes, scores, finals)
        return collate(rows, L), ro

    def write_log(self, path: str, step: int):
        """Append the newest rollout to RUN/rollouts.jsonl (one line per sample; process 0 only)."""
        ro = self.last
        if ro is None or jax.process_index() != 0:
            return
        with open(path, "a") as f:
            for i, prob in enumerate(ro.problems):
                f.write(json.dumps({"step": step, "problem_id": prob.id, "status": ro.statuses[i],
                                    "outcome_reward": ro.outcome_rewards[i], "process_rewards": ro.process_rewards[i],
                                    "final_reward": ro.final_rewards[i], "completion": ro.completions[i]}) + "\n")

    def step(self, step: int):
        host, ro = self.build_batch(step, *self.sample(step))
        return self.update(host, ro)

    def update(self, host: dict, ro: Rollout):
        """Old/reference log-probs and values of the rollout batch, GAE, ppo.epochs updates -> (metrics, tokens)."""
        self.last = ro
        batch = put_batch(host, self.tr.mesh)
        old_logp, ref_logp, values = self.tr.rollout_stats_fn(self.tr.state["params"], self.tr.frozen, batch)
        batch = self._adv({**batch, "old_logp": old_logp, "ref_logp": ref_logp, "old_values": values})
        for _ in range(self.cfg.ppo.epochs):
            metrics = self.tr.step(batch)
        metrics = dict(metrics, outcome_reward=float(np.mean(ro.outcome_rewards)),
                       final_reward=float(np.mean(ro.final_rewards)),
                       pass_rate=float(np.mean([s == "passed" for s in ro.statuses])))
        flat = [v for r in ro.process_rewards for v in r]
        if flat:
            metrics["process_reward"] = float(np.mean(flat))
        return metrics, int(host["loss_mask"].sum())
