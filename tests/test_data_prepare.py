"""Data cleaning and `o1jax data prepare`: references failing their own tests are dropped with a reason, the summary
names rejected rows, the CLI writes a readable TFDS dataset."""
import json
import os
import sys

import pytest

from o1jax.cli import main
from o1jax.data import load_problems, prepare, summary

sys.path.insert(0, os.path.dirname(__file__))
from fixtures.local_runner import LocalRunner  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _has_service() -> bool:
    try:
        from o1jax.execution import ExecutionService  # noqa: F401
        return True
    except ImportError:
        return False


def test_reference_failing_its_tests_is_rejected_with_reason(tmp_path):
    prep = prepare("mbpp", os.path.join(FIX, "mbpp_sanitized.json"), data_dir=str(tmp_path), runner=LocalRunner())
    assert sorted(p.id for p in prep.problems) == ["mbpp/17", "mbpp/2", "mbpp/606"]
    reasons = {r.where: r.reason for r in prep.rejected}
    assert "reference solution fails its own tests" in reasons["mbpp/520"]
    assert "mbpp_sanitized.json row 4" in reasons
    text = summary(prep)
    assert "mbpp: 3 problems, 2 rejected" in text and "mbpp/520: reference solution fails" in text
    assert "tests per problem: min 2" in text
    assert prep.path and len(load_problems("mbpp", "train", str(tmp_path))) == 1


def test_taco_cleaning_drops_wrong_reference():
    prep = prepare("taco", os.path.join(FIX, "taco"), runner=LocalRunner(), write=False)
    assert "taco/train/4" not in {p.id for p in prep.problems}
    assert any(r.where == "taco/train/4" and "fails its own tests" in r.reason for r in prep.rejected)
    assert {p.id for p in prep.problems} == {"taco/train/0", "taco/train/1", "taco/train/2", "taco/test/0"}


def test_codeio_prepare_makes_tests_then_splits_by_hash():
    prep = prepare("codeio", os.path.join(FIX, "codeio_mini.jsonl"), runner=LocalRunner(), write=False,
                   codeio_cases=3)
    assert [p.id for p in prep.problems] == ["codeio/0", "codeio/1"]
    assert all(p.split in ("train", "test") and p.num_tests == 3 for p in prep.problems)
    assert len(prep.rejected) == 3


def test_cli_prepare_no_verify_prints_summary_and_rejected_out(tmp_path, capsys):
    out = tmp_path / "rejected.jsonl"
    rc = main(["data", "prepare", "taco", "--path", os.path.join(FIX, "taco"), "--data-dir", str(tmp_path),
               "--no-verify", "--rejected-out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "taco: 5 problems, 1 rejected" in text and "train.jsonl line 4: malformed row" in text
    assert json.loads(out.read_text().splitlines()[0])["where"] == "train.jsonl line 4"
    assert len(load_problems("taco", "train", str(tmp_path))) == 4


def test_cli_bad_path_is_one_line_error(tmp_path, capsys):
    rc = main(["data", "prepare", "mbpp", "--path", str(tmp_path / "missing.json"), "--no-verify", "--dry-run"])
    assert rc == 2 and "missing.json: no such file or folder" in capsys.readouterr().err


@pytest.mark.skipif(not _has_service(), reason="o1jax.execution.ExecutionService not available yet")
def test_cli_prepare_with_real_execution_service(tmp_path, capsys):
    """Integration: the real sandboxed service verifies the references (HumanEval fixture, MBPP fixture)."""
    rc = main(["data", "prepare", "mbpp", "--path", os.path.join(FIX, "mbpp_sanitized.json"),
               "--data-dir", str(tmp_path), "--workers", "2", "--allow-weaker-sandbox"])
    text = capsys.readouterr().out
    assert rc == 0 and "mbpp: 3 problems, 2 rejected" in text, text
    rc = main(["data", "prepare", "humaneval", "--path", os.path.join(FIX, "humaneval_mini.jsonl"),
               "--data-dir", str(tmp_path), "--workers", "2", "--allow-weaker-sandbox"])
    text = capsys.readouterr().out
    assert rc == 0 and "humaneval: 2 problems, 1 rejected" in text, text
