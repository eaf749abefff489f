"""CodeI/O: test cases made by running input generators and the reference with fixed seeds; deterministic; bad
rows rejected with their line. Runs on the in-process fixture runner, and on the real ExecutionService when present."""
import os
import sys

import pytest

from o1jax.data.codeio import args_of, make_codeio_tests, read_codeio
from o1jax.data.jobs import reference_job

sys.path.insert(0, os.path.dirname(__file__))
from fixtures.local_runner import LocalRunner  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "codeio_mini.jsonl")


def _service_or_skip():
    try:
        from o1jax.execution import ExecutionService
    except ImportError:
        pytest.skip("o1jax.execution.ExecutionService not available yet")
    return ExecutionService(workers=2, allow_weaker=True)  # trusted fixture code: weaker isolation is fine


@pytest.fixture(params=["local", "service"])
def runner(request):
    if request.param == "local":
        yield LocalRunner()
    else:  # the real sandboxed service: same contract, separate processes
        with _service_or_skip() as svc:
            yield svc


def test_read_codeio_parses_signature_and_rejects_row_without_main_solution():
    rows, rejected = read_codeio(FIX)
    assert [r.id for r in rows] == ["codeio/0", "codeio/1", "codeio/2", "codeio/3"]
    assert rows[0].params == ("nums", "k") and rows[0].n_required == 1
    assert "`main_solution(nums, k)`" in rows[0].question
    assert [r.where for r in rejected] == ["codeio_mini.jsonl line 5"] and "main_solution" in rejected[0].reason
    assert len(read_codeio(FIX, limit=2)[0]) == 2


def test_args_follow_the_signature_not_the_dict_order():
    rows, _ = read_codeio(FIX)
    assert args_of(rows[1], {"b": 4, "a": 6}) == [6, 4]
    assert args_of(rows[0], {"nums": [1]}) == [[1]]  # k has a default
    with pytest.raises(ValueError, match="do not match"):
        args_of(rows[2], {"y": 1})


def test_generated_tests_are_deterministic_and_reference_passes_them(runner):
    rows, _ = read_codeio(FIX)
    problems, rejected = make_codeio_tests(rows, runner, n_cases=5, seed=0)
    again, _ = make_codeio_tests(rows, runner, n_cases=5, seed=0)
    other, _ = make_codeio_tests(rows, runner, n_cases=5, seed=1)
    assert [p.id for p in problems] == ["codeio/0", "codeio/1"]
    assert [p.tests for p in problems] == [p.tests for p in again]
    assert [p.tests for p in problems] != [p.tests for p in other]
    gcd = problems[1]
    assert gcd.tests["fn_name"] == "main_solution" and len(gcd.tests["cases"]) == 5
    import math
    for case in gcd.tests["cases"]:  # expected values really are the reference's outputs
        a, b = case["args"]
        assert case["expected"] == {"gcd": math.gcd(a, b)}
    reasons = {r.where: r.reason for r in rejected}
    assert "do not match" in reasons["codeio_mini.jsonl line 3"]
    assert "reference main_solution fails" in reasons["codeio_mini.jsonl line 4"]
    assert "ZeroDivisionError" in reasons["codeio_mini.jsonl line 4"]
    results = runner.run([reference_job(p) for p in problems])
    assert [r["status"] for r in results] == ["passed", "passed"]


def test_real_codeio_file_first_rows_parse():
    from o1jax.errors import UserError
    try:
        rows, rejected = read_codeio(None, limit=20)  # the reasoning-gym wheel's file, via o1jax.assets
    except UserError as e:  # neither installed nor cached, and offline
        pytest.skip(str(e))
    assert len(rows) == 20 and all(r.params for r in rows)
