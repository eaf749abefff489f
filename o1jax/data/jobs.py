"""(Problem, extracted code) -> an execution-service job dict: the bridge from sampling to the execution service used
by MCTS terminal rewards, RL outcome rewards, evaluation and data cleaning (reference solutions on their own tests)."""
from __future__ import annotations

import ast
import copy

from o1jax.data.extraction import _parses, choose_entry_point, defines, top_level_functions
from o1jax.data.problem import Problem


def _imports_of(code: str) -> str:
    """Top-level import lines of a starter prompt (HumanEval's `from typing import List`), which a full
    re-implementation in the completion often leaves out."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "\n".join(ln for ln in code.splitlines() if ln.startswith(("import ", "from ")))
    return "\n".join(ast.get_source_segment(code, n) or "" for n in tree.body
                     if isinstance(n, (ast.Import, ast.ImportFrom)))


def build_program(problem: Problem, code: str) -> str:
    """The program to run. Stdio: the code. Call/assert: the full code when it defines the entry point (plus the
    starter's imports); `starter_code + code` when the code is a body continuing the starter (HumanEval); else the
    code plus an alias `entry = <its last function>` (entry point taken from the generated code). A LeetCode-style
    `class Solution` gets a module-level function that calls the method."""
    entry = problem.entry_point
    if problem.io_format == "stdio" or not entry:
        return code
    top = top_level_functions(code)
    if entry in top:
        head = _imports_of(problem.starter_code)
        return f"{head}\n{code}" if head else code
    if "Solution" in top and defines(code, entry):
        return f"{code}\n\ndef {entry}(*args, **kwargs):\n    return Solution().{entry}(*args, **kwargs)\n"
    if problem.starter_code and _parses(problem.starter_code + code) and not _parses(code.strip() or "x"):
        return problem.starter_code + code  # a body: indented, so it does not parse on its own
    chosen = choose_entry_point(code, entry)
    if chosen and chosen != entry:
        return f"{code}\n\n{entry} = {chosen}\n"
    return code


def make_job(problem: Problem, code: str, *, job_id: str | None = None, timeout_s: float = 2.0,
             memory_mb: int = 1024, max_tests: int | None = None) -> dict:
    """Execution job for `code` (from `extract_code`) on `problem`'s tests; `max_tests` keeps the first cases
    (the reference MCTS samples up to 10 ground-truth tests per reward)."""
    tests = copy.deepcopy(problem.tests)
    if max_tests is not None and "cases" in tests:
        tests["cases"] = tests["cases"][:max_tests]
    return {"id": job_id or problem.id, "program": build_program(problem, code), "tests": tests,
            "timeout_s": float(timeout_s), "memory_mb": int(memory_mb)}


def reference_job(problem: Problem, which: int = 0, **kw) -> dict:
    """Job running reference solution `which` on the problem's tests (data cleaning drops failing problems)."""
    return make_job(problem, problem.solutions[which], job_id=f"{problem.id}/reference{which}", **kw)
