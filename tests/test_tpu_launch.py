"""tpu/launch.sh: argument checks and the gcloud commands it would run (dry run; no cloud here)."""
import os
import subprocess

LAUNCH = os.path.join(os.path.dirname(__file__), "..", "tpu", "launch.sh")


def test_dry_run_turns_on_jax_distributed_on_every_host():
    out = subprocess.run([LAUNCH, "--name", "pod", "--zone", "z", "--create", "v5p-64", "--dry-run", "--",
                          "o1jax", "train", "sft", "--data", "my data.jsonl"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("create pod" in ln and "--accelerator-type v5p-64" in ln for ln in lines)
    last = lines[-1]
    assert "--worker=all" in last and "mesh.distributed=true" in last and "my\\ data.jsonl" in last


def test_missing_name_is_one_line_error():
    out = subprocess.run([LAUNCH, "--zone", "z", "--", "o1jax", "--help"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("error:") and len(out.stderr.splitlines()) == 1
