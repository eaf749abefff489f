"""PPO against the real execution service: rewards land on the right tokens (dense r^j + R, or the paper's phi on the
last token), the outcome reward R comes from running the extracted code in the sandbox (a correct program gets 1, a
wrong one 0), PRM step scores come from a trained `o1jax train prm` run, and `o1jax train ppo` runs end to end."""
import collections
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from o1jax.execution.rewards import aggregate_reward, alpha_schedule
from o1jax.training.ppo import NO_CODE, place_rewards, step_end_token_indices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Completion = collections.namedtuple("Completion", "text token_ids")
STATUSES = {"passed", "failed", "timeout", "memory", "runtime_error", "compile_error", "invalid_job", "sandbox_error",
            NO_CODE}


@pytest.fixture(scope="module")
def service():
    from o1jax.execution import ExecutionService
    with ExecutionService(workers=2) as svc:
        yield svc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import o1jax
    from o1jax.models.sharding import make_mesh
    from o1jax.training.testing import tiny_hf_model_dir
    d = tmp_path_factory.mktemp("ppo")
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    return o1jax.load_model(tiny_hf_model_dir(str(d / "m")), mesh=mesh), mesh, d


def _runner(tiny, service, scorer=None, **ppo):
    from o1jax.training.config import TrainConfig
    from o1jax.training.data import load_examples
    from o1jax.training.ppo import PPORunner
    from o1jax.training.state import build_trainer
    from o1jax.training.testing import sample_rows, write_jsonl
    lm, mesh, d = tiny
    tc = TrainConfig()
    tc.train.batch_size, tc.ppo.max_new_tokens, tc.optim.lr = 4, 12, 1e-3
    tc.lora.enabled, tc.lora.rank = True, 2
    for k, v in ppo.items():
        setattr(tc.ppo, k, v)
    tr = build_trainer("ppo", tc, lm.cfg, lm.params, mesh)
    exs = load_examples("ppo", write_jsonl(str(d / "ppo.jsonl"), sample_rows("ppo", 4)), lm.tokenizer, tc)
    return PPORunner(tr, lm, exs, tc, service, scorer)


def _inject(runner, texts):
    tok = runner.lm.tokenizer
    exs = runner.examples[: len(texts)]
    return exs, [runner.enc.prompt(e["prompt"]) for e in exs], [Completion(t, tok.encode(t)) for t in texts]


def test_outcome_on_last_token_and_process_rewards_on_step_ends():
    r = place_rewards(n_prompt=3, n_completion=4, outcome=1.0, process=[(1, 0.5), (3, 0.25)], length=8)
    # target index of completion token i is n_prompt - 1 + i
    np.testing.assert_allclose(r, [0, 0, 0, 0.5, 0, 1.25, 0, 0])


def test_real_service_rewards_correct_code_1_and_wrong_code_0(tiny, service):
    runner = _runner(tiny, service)
    texts = ["Sure:\n```python\ndef add(a, b):\n    return a + b\n```",   # correct on every row's test
             "```python\ndef add(a, b):\n    return a - b + 100\n```",     # wrong answer
             "I do not know.",                                             # no code: nothing runs
             "```python\ndef add(a, b):\n    raise ValueError(a)\n```"]    # crashes
    exs, prompt_ids, comps = _inject(runner, texts)
    host, ro = runner.build_batch(0, exs, prompt_ids, comps)
    assert ro.statuses == ["passed", "failed", NO_CODE, "runtime_error"]
    assert ro.outcome_rewards == [1.0, 0.0, 0.0, 0.0]
    last = [len(p) - 1 + len(c.token_ids) - 1 for p, c in zip(prompt_ids, comps)]
    assert host["rewards"][0, last[0]] == 1.0 and host["rewards"].sum() == 1.0  # R on the last token only
    metrics, ntok = runner.update(host, ro)
    assert ntok == sum(len(c.token_ids) for c in comps)
    assert metrics["outcome_reward"] == 0.25 and metrics["pass_rate"] == 0.25
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(runner.tr.state["step"]) == 1


@pytest.mark.parametrize("placement", ["dense", "aggregate"])
def test_process_reward_placement(tiny, service, placement):
    seen = []

    def scorer(prompts, steps):  # stands in for a PRM: fixed r^1, r^2
        seen.append(steps)
        return [[0.5, 0.25][: len(s)] for s in steps]

    runner = _runner(tiny, service, scorer, process_rewards=True, reward=placement, process_gamma=0.9)
    text = ("Step 1: plan<Step_End>\n<Step_Begin>\n### Step 2: code\n```python\ndef add(a, b):\n"
            "    return a + b\n```<Step_End>")
    exs, prompt_ids, comps = _inject(runner, [text])
    t = 20
    host, ro = runner.build_batch(t, exs, prompt_ids, comps)
    assert seen == [[["Step 1: plan", "code\n```python\ndef add(a, b):\n    return a + b\n```"]]]
    assert ro.statuses == ["passed"] and ro.process_rewards == [[0.5, 0.25]]
    n0 = len(prompt_ids[0]) - 1
    ends = step_end_token_indices(list(comps[0].token_ids), runner.lm.tokenizer, "<Step_End>")
    assert len(ends) == 2 and ends[1] == len(comps[0].token_ids) - 1  # the second step ends the completion
    want = np.zeros(host["rewards"].shape[1], np.float32)
    if placement == "dense":  # r^1 on step 1's end; r^2 + R on the last token
        want[n0 + ends[0]], want[n0 + ends[1]] = 0.5, 0.25 + 1.0
    else:  # phi(R, r) = alpha(t) R + (1 - alpha(t)) (r^1 + 0.9 r^2) / 2, alpha(20) = 0.8
        phi = 0.8 * 1.0 + 0.2 * (0.5 + 0.9 * 0.25) / 2
        assert phi == pytest.approx(aggregate_reward(1.0, [0.5, 0.25], t, gamma=0.9, alpha=alpha_schedule(t)))
        want[n0 + ends[1]] = phi
        assert ro.final_rewards == [pytest.approx(phi)]
    np.testing.assert_allclose(host["rewards"][0], want, rtol=1e-6)


@pytest.fixture(scope="module")
def prm_runs(tmp_path_factory):
    """{prm kind: (run dir, data file, rows, config)}: `o1jax train prm` runs (2 steps, tiny model), made once."""
    from o1jax.training.config import TrainConfig
    from o1jax.training.loop import train
    from o1jax.training.testing import sample_rows, tiny_hf_model_dir, write_jsonl
    d = tmp_path_factory.mktemp("prm")
    model = tiny_hf_model_dir(str(d / "m"))
    rows = sample_rows("prm", 4)
    data = write_jsonl(str(d / "prm.jsonl"), rows)
    cache = {}

    def get(kind):
        if kind not in cache:
            tc = TrainConfig()
            tc.train.steps, tc.train.batch_size, tc.train.progress, tc.train.tensorboard = 2, 2, False, False
            tc.optim.lr, tc.prm.kind = 5e-2, kind
            tc.prm.plus_token, tc.prm.minus_token = "+", "-"  # one token each for the tiny tokenizer
            tc.lora.enabled, tc.lora.rank = True, 2
            run = str(d / f"run_{kind}")
            assert train("prm", model, data, run, tc) == 0
            cache[kind] = (run, model, data, rows, tc)
        return cache[kind]
    return get


@pytest.mark.parametrize("prm_kind", ["pointwise", "generative"])
def test_step_scorer_from_a_prm_run_matches_the_prm_training_loss(prm_runs, prm_kind):
    """The scorer encodes a path as PRM training did and reads the trained head: the BCE of its r^j against the
    labels equals the PRM's own eval loss on that row (restored from the run's checkpoint)."""
    from o1jax.training.checkpointing import RunCheckpointer
    from o1jax.training.data import Batches, load_examples
    from o1jax.training.loop import setup
    from o1jax.training.mesh import put_batch
    from o1jax.training.prm_scorer import load_step_scorer
    run, model, data, rows, tc = prm_runs(prm_kind)
    mesh, lm, trainer = setup("prm", model, tc, run)
    ck = RunCheckpointer(run, every=0, keep=3)
    trainer.state, _ = ck.restore(trainer.state)
    ck.close()
    exs = load_examples("prm", data, lm.tokenizer, tc)
    scorer = load_step_scorer(run, mesh)
    r = scorer([rows[1]["prompt"]], [rows[1]["steps"]])[0]
    assert len(r) == 2 and all(0.0 < x < 1.0 for x in r)
    v = np.array(rows[1]["values"])
    bce = float(np.mean(-(v * np.log(r) + (1 - v) * np.log1p(-np.array(r)))))
    batch = Batches([exs[1]], 1, tc.data.max_length, 0, shuffle=False).batch(0)
    want = float(trainer.eval_fn(trainer.state, trainer.frozen, put_batch(batch, mesh))["loss"])
    assert bce == pytest.approx(want, rel=1e-4)
    # one forward scores every prefix: r^1 of the whole path equals r^1 of the one-step prefix (scalar heads; the
    # generative format drops the separator before the last step's rating tag, as PRM training data does)
    if prm_kind == "pointwise":
        assert scorer([rows[1]["prompt"]], [rows[1]["steps"][:1]])[0][0] == pytest.approx(r[0], rel=1e-5)


def test_train_ppo_cli_end_to_end_with_real_execution_and_prm(tmp_path, prm_runs):
    """`o1jax train ppo` on a tiny policy that answers every prompt with '# plan<Step_End>\\nprint(3)': one row's
    test expects 3 (passes in the sandbox, R = 1), the other 4 (fails, R = 0); the pointwise PRM run scores the
    one step, and ppo.reward=aggregate puts phi(R, r^1) on the last token."""
    from o1jax.assets import smollm2_gguf
    from o1jax.models.gguf_io import load_gguf_tokenizer
    from o1jax.training.testing import scripted_hf_model_dir, subprocess_env, write_jsonl
    tok = load_gguf_tokenizer(smollm2_gguf())
    policy = scripted_hf_model_dir(str(tmp_path / "policy"), "# plan<Step_End>\nprint(3)", tok)
    rows = [{"prompt": "Read two numbers and print their sum.", "id": "sum",
             "tests": {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "3\n"}]}},
            {"prompt": "Read two numbers and print their sum plus one.", "id": "sum1",
             "tests": {"kind": "stdio", "cases": [{"input": "1 2\n", "output": "4\n"}]}}]
    data = write_jsonl(str(tmp_path / "ppo.jsonl"), rows)
    env = subprocess_env(REPO)
    prm_run = prm_runs("pointwise")[0]
    common = ["train.progress=false", "train.tensorboard=false", "lora.enabled=true", "lora.rank=2"]
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "o1jax", "train", "ppo", "--model", policy, "--data", data, "--out",
                        str(out), "--workers", "2", "train.steps=2", "train.batch_size=2", "ppo.max_new_tokens=16",
                        "ppo.temperature=0", "ppo.process_rewards=true", f"ppo.prm_model={prm_run}",
                        "ppo.reward=aggregate", "optim.lr=1e-4", "lora.targets=o", *common],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    got = [json.loads(x) for x in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(got) == 4 and {g["step"] for g in got} == {1, 2}
    for g in got:
        assert g["status"] in STATUSES
        assert g["completion"].startswith("# plan<Step_End>\nprint(3)")
        want_R = 1.0 if g["problem_id"] == "sum" else 0.0
        assert (g["status"], g["outcome_reward"]) == ("passed" if want_R else "failed", want_R)
        (r1,) = g["process_rewards"]
        assert 0.0 < r1 < 1.0
        assert g["final_reward"] == pytest.approx(aggregate_reward(want_R, [r1], g["step"] - 1, gamma=0.9))
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["outcome_reward"] == 0.5 for m in metrics)
