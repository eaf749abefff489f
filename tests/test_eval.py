"""`o1jax eval` end to end on a tiny random model (SmolLM2's real tokenizer, random weights): real prompting,
generation, extraction and sandboxed execution; the contract files (samples.jsonl, summary.json) are checked."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import transformers


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from o1jax.assets import smollm2_gguf
    from o1jax.models.gguf_io import load_gguf_tokenizer
    d = tmp_path_factory.mktemp("tiny")
    tok = load_gguf_tokenizer(smollm2_gguf())
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


class Canned:
    """A completion with given text, for runs that stand in for generation only."""
    def __init__(self, text):
        self.text, self.token_ids, self.finish_reason = text, [1] * 5, "stop"


class MessageTok:
    """A 'chat template' that renders one message's content: the canned models find the problem in it."""
    def __init__(self, index):
        self.index = index

    def apply_chat_template(self, messages, **kw):
        return messages[self.index]["content"]


@pytest.mark.parametrize("prompting", ["vanilla", "pseudocode"])
def test_eval_end_to_end_tiny_model(tiny_model_dir, prompting, tmp_path):
    out = tmp_path / "ev"
    res = subprocess.run(
        [sys.executable, "-m", "o1jax", "eval", "--model", tiny_model_dir, "--dataset", "humaneval", "--limit", "3",
         "--n", "2", "--prompting", prompting, "--out", str(out), "eval.max_new_tokens=24", "eval.max_path_tokens=48",
         "eval.max_steps=2"],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 2
    assert {x["problem_id"] for x in lines} == {"HumanEval/0", "HumanEval/1", "HumanEval/2"}
    for x in lines:
        assert {"problem_id", "completion", "code", "passed"} <= set(x)
        assert isinstance(x["passed"], bool)
        assert x["tokens"] > 0  # really generated
        assert x["passed"] or isinstance(x["error"], str) and x["error"]  # why it failed, from the service
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["problems"] == 3 and 0.0 <= summary["pass@1"] <= 1.0
    assert summary["pass@1"] == sum(x["passed"] for x in lines) / 6
    assert (out / "pass_at_k.png").stat().st_size > 1000
    assert json.loads((out / "config.json").read_text())["eval"]["prompting"] == prompting
    assert "pass@1" in res.stdout


def test_eval_scores_correct_code_as_passed(monkeypatch):
    """The scoring path is not vacuous: a 'model' that answers with the canonical solution scores pass@1 = 1."""
    from o1jax.data.prepare import load_source
    from o1jax.evaluation.runner import EvalConfig, evaluate
    from o1jax.execution import ExecutionService

    problems, _ = load_source("humaneval")
    problems = problems[:3]
    by_prompt = {}

    class CannedLM:  # stands in for generation only; extraction, jobs and execution are the real ones
        tokenizer = MessageTok(-1)

        def generate(self, prompts, n=1, **kw):
            return [[Canned(by_prompt[p]) for _ in range(n)] for p in prompts]

    from o1jax.data import vanilla_messages
    for p in problems:
        by_prompt[vanilla_messages(p)[-1]["content"]] = f"```python\n{p.starter_code}{p.solutions[0]}```"
    with ExecutionService(workers=2) as svc:
        s = evaluate(CannedLM(), problems, EvalConfig(n=2), svc, progress=False)
    assert s["pass@1"] == 1.0 and s["aspr"] == 1.0


def test_pseudocode_eval_reads_steps_from_one_generation_and_scores_the_python_step():
    """Pseudocode paths come from one generation per sample, stopped at the close of the python block: a canned
    path with two pseudocode steps and a correct python step passes; the same path with the python step past
    max_steps has no code; the stop the runner asks for is the python block's close, not <Step_End>."""
    from o1jax.data import PATH_END
    from o1jax.data.prepare import load_source
    from o1jax.evaluation.runner import EvalConfig, evaluate
    from o1jax.execution import ExecutionService

    problems, _ = load_source("humaneval")
    problems = problems[:2]
    asked = []

    def path(p):
        return (" Structure (Action 1)\n```pseudo\nsolve\n```\n<Step_End>\n<Step_Begin>\n### Step 2: Refine (Action 2)"
                "\nloop\n<Step_End>\n\n<Step_Begin>\n### Step 3: Code (Action 3)\n"
                f"```python\n{p.starter_code}{p.solutions[0].rstrip()}\n```")

    class CannedLM:
        tokenizer = MessageTok(1)

        def generate(self, prompts, n=1, **kw):
            asked.append(kw)
            by_user = {pr: path(p) for p in problems for pr in prompts if p.starter_code.strip() in pr}
            return [[Canned(by_user[pr]) for _ in range(n)] for pr in prompts]

    with ExecutionService(workers=2) as svc:
        s = evaluate(CannedLM(), problems, EvalConfig(prompting="pseudocode", n=2), svc, progress=False)
        assert s["pass@1"] == 1.0 and s["no_code"] == 0
        assert set(asked[0]["stop"]) == set(PATH_END) and asked[0]["max_new_tokens"] == 1024
        s = evaluate(CannedLM(), problems, EvalConfig(prompting="pseudocode", n=2, max_steps=2), svc, progress=False)
        assert s["pass@1"] == 0.0 and s["no_code"] == 4


def test_an_interrupted_eval_resumes_to_the_same_result(tmp_path):
    """Batches are appended to DIR/samples.partial.jsonl as their code finishes running; after a crash the run is
    not overwritten without --resume, refuses other settings, and with the same settings ends with the same
    samples.jsonl as an uninterrupted run."""
    from o1jax.data.prepare import load_source
    from o1jax.errors import UserError
    from o1jax.evaluation.runner import PARTIAL, EvalConfig, evaluate
    from o1jax.execution import ExecutionService

    problems, _ = load_source("humaneval")
    problems = problems[:3]

    class SeededLM:  # answers depend on the seed, as a real sampler's do: right for even seeds, wrong for odd
        tokenizer = MessageTok(-1)

        def __init__(self, crash_at_seed=None):
            self.crash_at_seed, self.seeds = crash_at_seed, []

        def generate(self, prompts, n=1, seed=0, **kw):
            if seed == self.crash_at_seed:
                raise RuntimeError("simulated crash")
            self.seeds.append(seed)
            p = next(p for p in problems if p.starter_code.strip() in prompts[0])
            body = p.solutions[0] if seed % 2 == 0 else "    return None\n"
            return [[Canned(f"```python\n{p.starter_code}{body}```") for _ in range(n)]]

    cfg = EvalConfig(n=2, batch_problems=1)
    with ExecutionService(workers=2) as svc:
        whole = evaluate(SeededLM(), problems, cfg, svc, out_dir=str(tmp_path / "whole"), progress=False)
        d = str(tmp_path / "run")
        with pytest.raises(RuntimeError, match="simulated crash"):
            evaluate(SeededLM(crash_at_seed=2), problems, cfg, svc, out_dir=d, progress=False)
        lines = (tmp_path / "run" / PARTIAL).read_text().splitlines()
        assert len(lines) == 3  # header + the batches of seeds 0 and 1, finished before the crash
        with pytest.raises(UserError, match="add --resume"):
            evaluate(SeededLM(), problems, cfg, svc, out_dir=d, progress=False)
        with pytest.raises(UserError, match="eval.temperature"):
            evaluate(SeededLM(), problems, EvalConfig(n=2, batch_problems=1, temperature=0.5), svc, out_dir=d,
                     progress=False, resume=True)
        lm = SeededLM()
        resumed = evaluate(lm, problems, cfg, svc, out_dir=d, progress=False, resume=True)
    assert lm.seeds == [2]  # only the missing batch ran, with its own seed
    assert resumed["resumed_problems"] == 2 and resumed["pass@1"] == whole["pass@1"] == 2 / 3
    assert not (tmp_path / "run" / PARTIAL).exists()
    assert (tmp_path / "run" / "samples.jsonl").read_text() == (tmp_path / "whole" / "samples.jsonl").read_text()
