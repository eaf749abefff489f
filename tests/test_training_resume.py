"""`o1jax train` end to end on a tiny HF model: kill -9 and rerun reaches bitwise the params of an uninterrupted
run; a damaged newest checkpoint falls back to the previous one; the run dir loads and exports as a model."""
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from o1jax.training.testing import sample_rows, tiny_hf_model_dir, write_jsonl
    d = tmp_path_factory.mktemp("train")
    tiny_hf_model_dir(str(d / "model"))
    write_jsonl(str(d / "sft.jsonl"), sample_rows("sft", 12))
    return d


STEPS = 6


def _cmd(assets, out, steps=STEPS):
    return [sys.executable, "-m", "o1jax", "train", "sft", "--model", str(assets / "model"), "--data",
            str(assets / "sft.jsonl"), "--out", str(out), f"train.steps={steps}", "train.batch_size=4",
            "train.seed=3", "checkpoint.every=2", "optim.lr=1e-2", "optim.warmup_steps=2", "train.progress=false",
            "lora.enabled=true", "lora.rank=2", "lora.targets=q,v,up"]


def _env(delay="0"):
    from o1jax.training.testing import subprocess_env
    return subprocess_env(REPO, O1JAX_TRAIN_STEP_DELAY_S=delay)


def _final_params(run):
    import o1jax
    return {k: np.asarray(v) for k, v in o1jax.load_model(str(run)).params.items()}


def _steps_logged(run):
    p = run / "metrics.jsonl"
    return sum(1 for _ in open(p)) if p.exists() else 0


def test_sigkill_and_restart_ends_bitwise_equal_to_uninterrupted_run(assets):
    straight = subprocess.Popen(_cmd(assets, assets / "straight"), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    killed_run = assets / "killed"
    kill_at = random.Random().randint(2, STEPS - 2)
    p = subprocess.Popen(_cmd(assets, killed_run), env=_env("0.3"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _steps_logged(killed_run) < kill_at and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert _steps_logged(killed_run) < STEPS
    r = subprocess.run(_cmd(assets, killed_run), env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resuming" in r.stdout or _steps_logged(killed_run) >= STEPS
    out = straight.communicate(timeout=240)[0]
    assert straight.returncode == 0, out[-3000:]
    a, b = _final_params(assets / "straight"), _final_params(killed_run)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    base = _final_params(assets / "model")
    assert any(not np.array_equal(a[k], base[k]) for k in a)  # LoRA merged into the export: training happened


def test_truncated_newest_checkpoint_falls_back_to_previous(assets):
    from o1jax.training.checkpointing import RunCheckpointer
    import jax
    run = assets / "straight"
    ck = RunCheckpointer(str(run), every=2, keep=3)
    steps = sorted(ck.steps())
    assert steps[-1] == STEPS and len(steps) >= 2
    newest = run / "checkpoints" / str(steps[-1]) / "params"
    data_files = [os.path.join(r, f) for r, _, fs in os.walk(newest) for f in fs if os.path.basename(r) == "d"]
    assert data_files
    for path in data_files:  # a write cut short: every data file of the newest step loses its second half
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    like = ck.ckpt.load_checkpointables(steps[-2])  # the shapes a trainer would pass
    like = {"params": like["params"], "opt_state": like["opt_state"], "step": like["train"]["step"],
            "rng": like["train"]["rng"]}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        state, meta = ck.restore(like)
    assert meta["restored_step"] == steps[-2]
    assert int(np.asarray(state["step"])) == steps[-2]
    assert any("corrupt or partial" in str(x.message) for x in w)
    ck.close()


def test_export_hf_of_a_run_dir_loads_in_transformers(assets, tmp_path):
    r = subprocess.run([sys.executable, "-m", "o1jax", "export-hf", str(assets / "killed"), "--out",
                        str(tmp_path / "hf")], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
    ours = _final_params(assets / "killed")
    np.testing.assert_allclose(m.model.embed_tokens.weight.detach().numpy(), ours["embed"], atol=1e-6)


def test_malformed_line_is_one_clear_cli_error(assets, tmp_path, capsys):
    from o1jax.cli import main
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "response": "r"}\n{"prompt": "p", "response": 3}\n')
    rc = main(["train", "sft", "--model", str(assets / "model"), "--data", str(bad), "--out", str(tmp_path / "r"),
               "train.steps=1"])
    assert rc == 2
    assert "bad.jsonl line 2: 'response' must be str" in capsys.readouterr().err
