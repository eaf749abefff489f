"""The job/result JSON contract of `o1jax execute` and ExecutionService (other tools depend on it exactly).

Job: {"id", "program", "tests", "timeout_s" (per test, default 2), "memory_mb" (default 1024)} with tests one of
{"kind": "stdio", "cases": [{"input", "output"}]}, {"kind": "call", "fn_name", "cases": [{"args", "expected"}]},
{"kind": "assert", "code", "entry_point"}.
Result: {"id", "status", "passed", "total", "compiled", "cases", "stderr", "duration_s", ...}.
"""
from __future__ import annotations

import json

STATUSES = ("passed", "failed", "timeout", "memory", "runtime_error", "compile_error", "invalid_job",
            "sandbox_error")
KINDS = ("stdio", "call", "assert")
MAX_TIMEOUT_S = 60.0
MAX_MEMORY_MB = 16384


class InvalidJob(ValueError):
    pass


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise InvalidJob(msg)


def validate(job) -> dict:
    """A normalised copy of a job, or InvalidJob naming the bad field."""
    _need(isinstance(job, dict), "a job must be a JSON object")
    _need(isinstance(job.get("id"), str), 'field "id" must be a string')
    _need(isinstance(job.get("program"), str), 'field "program" must be a string')
    timeout = job.get("timeout_s", 2.0)
    _need(isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout <= MAX_TIMEOUT_S,
          f'field "timeout_s" must be a number in (0, {MAX_TIMEOUT_S:g}]')
    mem = job.get("memory_mb", 1024)
    _need(isinstance(mem, int) and not isinstance(mem, bool) and 16 <= mem <= MAX_MEMORY_MB,
          f'field "memory_mb" must be an integer in [16, {MAX_MEMORY_MB}]')
    tests = job.get("tests")
    _need(isinstance(tests, dict), 'field "tests" must be an object with a "kind"')
    kind = tests.get("kind")
    _need(kind in KINDS, f'tests.kind must be one of {", ".join(KINDS)} (got {kind!r})')
    if kind == "stdio":
        cases = tests.get("cases")
        _need(isinstance(cases, list) and cases, "stdio tests need a non-empty list tests.cases")
        for i, c in enumerate(cases):
            _need(isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str),
                  f"tests.cases[{i}] must be {{\"input\": str, \"output\": str}}")
    elif kind == "call":
        _need(isinstance(tests.get("fn_name"), str) and tests["fn_name"], "call tests need a string tests.fn_name")
        cases = tests.get("cases")
        _need(isinstance(cases, list) and cases, "call tests need a non-empty list tests.cases")
        for i, c in enumerate(cases):
            _need(isinstance(c, dict) and isinstance(c.get("args"), list) and "expected" in c,
                  f"tests.cases[{i}] must be {{\"args\": [...], \"expected\": <json>}}")
    else:
        _need(isinstance(tests.get("code"), str), "assert tests need a string tests.code")
        _need(isinstance(tests.get("entry_point"), str) and tests["entry_point"].isidentifier(),
              "assert tests need an identifier tests.entry_point")
    return {"id": job["id"], "program": job["program"], "tests": tests, "timeout_s": float(timeout),
            "memory_mb": mem}


def parse(raw: bytes | str) -> tuple[dict | None, dict | None]:
    """One job line: (its normalised job, None), or (None, its invalid_job result naming what is wrong)."""
    job = None
    try:
        job = json.loads(raw)
        if isinstance(job, dict) and "__unserialisable__" in job:  # what ExecutionService sends for such a job
            raise InvalidJob(f"not JSON-serialisable: {job['__unserialisable__']}")
        return validate(job), None
    except (ValueError, InvalidJob, RecursionError) as e:  # RecursionError: JSON nested too deeply
        jid = job.get("id") if isinstance(job, dict) else None  # the line parsed once; invalid_result keeps str ids
        return None, invalid_result(jid, f"invalid job: {e}"[:2000])


def n_tests(tests: dict) -> int:
    return 1 if tests["kind"] == "assert" else len(tests["cases"])


def invalid_result(job_id, message: str) -> dict:
    return {"id": job_id if isinstance(job_id, str) else None, "status": "invalid_job", "passed": 0, "total": 0,
            "compiled": False, "cases": [], "stderr": "", "duration_s": 0.0, "error": message}


def sandbox_error_result(job: dict, message: str) -> dict:
    return {"id": job.get("id"), "status": "sandbox_error", "passed": 0, "total": n_tests(job["tests"]),
            "compiled": False, "cases": [], "stderr": "", "duration_s": 0.0, "error": message}


# Case-level outcomes, worst first: the job's status is its worst case's outcome.
_SEVERITY = ("timeout", "memory", "runtime_error", "failed")


def job_status(compiled: bool, cases: list[dict], total: int) -> str:
    if not compiled:
        return "compile_error"
    if total and len(cases) == total and all(c["passed"] for c in cases):
        return "passed"
    seen = {c.get("status", "failed") for c in cases if not c["passed"]}
    for s in _SEVERITY:
        if s in seen:
            return s
    return "failed"
