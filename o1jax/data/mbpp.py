"""MBPP (Austin et al., 2021), the benchmark of the paper's Table 1: the full release (`text`, `test_setup_code`,
`challenge_test_list`) or the sanitized one (`prompt`, `test_imports`), from local json/jsonl/parquet files or the
HF hub. Tests are the rows' assert statements, run as one `check(candidate)` function by the assert kind."""
from __future__ import annotations

import ast
import re

from o1jax.data.problem import Problem, Rejected, check_tests
from o1jax.data.readers import hub_snapshot, read_rows

# The conventional splits by task_id (Austin et al.; google-research mbpp README).
SPLITS = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))


def mbpp_split(task_id: int) -> str:
    for name, lo, hi in SPLITS:
        if lo <= task_id <= hi:
            return name
    return "train"  # ids beyond 974 (none in the releases): never leak into the benchmark split


def entry_point_of(code: str, asserts: list[str]) -> str:
    """The reference's function that the asserts call (the asserts fix the name the answer must use)."""
    defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    called = set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", "\n".join(asserts)))
    for name in defined:
        if name in called:
            return name
    classes = [n.name for n in ast.parse(code).body if isinstance(n, ast.ClassDef)]
    for name in classes:  # a few MBPP tasks test a class
        if name in called:
            return name
    if defined:
        return defined[0]
    raise ValueError("reference code defines no function")


def check_code(asserts: list[str], setup: str, entry: str) -> str:
    """HumanEval-style check function: the execution service's assert kind runs `check(<entry point>)`. Calls of
    the entry point become `candidate(...)`, so a reference that itself defines `check` (MBPP 56) is not shadowed
    by the test's own `check`; each assert stays one line (a test case)."""
    call = re.compile(rf"(?<![\w.]){re.escape(entry)}(\s*\()")
    body = "\n".join("    " + call.sub(r"candidate\1", a.strip()) for a in asserts)
    return f"{setup.rstrip()}\n\n\ndef check(candidate):\n{body}\n".lstrip("\n")


def format_question(text: str, asserts: list[str]) -> str:
    """The original MBPP prompt: the task and its tests (they fix the function name and signature)."""
    return f"{text.strip()}\nYour code should pass these tests:\n\n" + "\n".join(a.strip() for a in asserts)


def load_mbpp(path: str | None = None, *, with_challenge: bool = False) -> tuple[list[Problem], list[Rejected]]:
    """Rows -> Problems with the conventional task_id splits. `path=None` downloads the sanitized set (online)."""
    path = path or hub_snapshot("google-research-datasets/mbpp", ["sanitized/*"])
    problems, rejected, seen = [], [], set()
    for where, row, _ in read_rows(path):
        try:
            if isinstance(row, Exception):
                raise row
            tid = int(row["task_id"])
            text = row["prompt"] if "prompt" in row else row["text"]
            asserts = list(row["test_list"]) + (list(row.get("challenge_test_list") or []) if with_challenge else [])
            if not asserts or not all(isinstance(a, str) and a.strip().startswith("assert") for a in asserts):
                raise ValueError("test_list must be a non-empty list of assert statements")
            imports = row.get("test_imports") or []
            setup = "\n".join(list(imports) + [row.get("test_setup_code") or ""]).strip()
            code = row["code"].replace("\r\n", "\n")
            entry = entry_point_of(code, asserts)
            tests = {"kind": "assert", "code": check_code(asserts, setup, entry), "entry_point": entry}
            if (why := check_tests(tests)) is not None:
                raise ValueError(why)
            if tid in seen:
                raise ValueError(f"duplicate task_id {tid}")
            seen.add(tid)
            problems.append(Problem(
                id=f"mbpp/{tid}", source="mbpp", question=format_question(text, asserts[:3]), tests=tests,
                entry_point=entry, solutions=(code,), split=mbpp_split(tid),
                meta={"text": text, "test_imports": setup}))
        except SyntaxError as e:
            rejected.append(Rejected(where, f"reference code does not parse: {e.msg} (line {e.lineno})"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            rejected.append(Rejected(where, f"malformed row: {'missing field ' + str(e) if isinstance(e, KeyError) else e}"))
    return problems, rejected
