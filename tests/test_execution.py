"""Execution service: the JSON contract, the three test kinds, compile check, rewards, CLI."""
import json
import os
import subprocess
import sys

import pytest

from o1jax.execution import ExecutionService, codec, rewards


@pytest.fixture(scope="module")
def svc():
    with ExecutionService(workers=2) as s:
        yield s


def _assert_job(jid, program, code, entry="f", **kw):
    return {"id": jid, "program": program, "tests": {"kind": "assert", "code": code, "entry_point": entry}, **kw}


def test_stdio_token_and_float_tolerance(svc):
    job = {"id": "s", "program": "a, b = map(float, input().split())\nprint(a / b, '  ok')",
           "tests": {"kind": "stdio", "cases": [{"input": "1 3\n", "output": "0.333333 ok\n"},
                                                 {"input": "1 4", "output": "0.3 ok"}]}}
    r = svc.run([job])[0]
    assert [c["passed"] for c in r["cases"]] == [True, False]
    assert (r["status"], r["passed"], r["total"], r["compiled"]) == ("failed", 1, 2, True)


def test_call_kind_outputs_serialised_and_compared_by_service(svc):
    job = {"id": "c", "program": "def f(x):\n    return (x, {'k': [x]}) if x else None",
           "tests": {"kind": "call", "fn_name": "f",
                     "cases": [{"args": [2], "expected": [2, {"k": [2]}]}, {"args": [0], "expected": None},
                               {"args": [3], "expected": 0}]}}
    r = svc.run([job])[0]
    assert [c["passed"] for c in r["cases"]] == [True, True, False]
    assert json.loads(r["cases"][2]["output"]) == [3, {"k": [3]}]  # CodeI/O reads outputs from here


def test_call_kind_leetcode_solution_class_and_exceptions(svc):
    prog = "class Solution:\n    def g(self, a):\n        if a < 0: raise ValueError('neg')\n        return a * 2"
    job = {"id": "L", "program": prog, "tests": {"kind": "call", "fn_name": "g",
                                                  "cases": [{"args": [2], "expected": 4}, {"args": [-1], "expected": 0}]}}
    r = svc.run([job])[0]
    assert r["cases"][0]["passed"] and r["cases"][1]["status"] == "runtime_error"
    assert r["status"] == "runtime_error"


def test_assert_kind_pass_and_fail(svc):
    code = "def check(candidate):\n    assert candidate(2) == (2, 2.0)\n    assert candidate(1) != 5"
    good, bad = svc.run([_assert_job("g", "def f(x): return (x, float(x))", code),
                         _assert_job("b", "def f(x): return [x, x]", code)])
    assert good["status"] == "passed" and good["passed"] == 1 == good["total"]
    assert bad["status"] == "failed" and bad["passed"] == 0


def test_compile_check_separate_from_running(svc):
    syntax, imp, runtime = svc.run([
        _assert_job("s", "def f(:\n  pass", "def check(c): pass"),
        _assert_job("i", "import no_such_module_xyz\ndef f(): return 1", "def check(c): assert c() == 1"),
        _assert_job("r", "def f(): return 1/0", "def check(c): assert c() == 1")])
    assert (syntax["status"], syntax["compiled"]) == ("compile_error", False)
    assert (imp["status"], imp["compiled"]) == ("compile_error", False)
    assert (runtime["status"], runtime["compiled"]) == ("runtime_error", True)


def test_invalid_jobs_do_not_stop_others(svc):
    deep: list = []
    for _ in range(100000):  # more nesting than json can write or read back
        deep = [deep]
    res = svc.run([{"id": "x", "program": 3}, {"id": "y", "program": "", "tests": {"kind": "nope"}},
                   {"id": "z", "program": "", "tests": {"kind": "call", "fn_name": "f",
                                                        "cases": [{"args": deep, "expected": 1}]}},
                   _assert_job("ok", "def f(): return 1", "def check(c): assert c() == 1")])
    assert [r["status"] for r in res] == ["invalid_job", "invalid_job", "invalid_job", "passed"], res
    assert "program" in res[0]["error"] and "kind" in res[1]["error"]
    assert res[2]["id"] == "z" and "not JSON-serialisable" in res[2]["error"], res[2]
    # What a worker does with a job line (the client cannot write this one): too deep for json is an invalid job.
    from o1jax.execution import jobs
    job, bad = jobs.parse(b"[" * 100000)
    assert job is None and bad["status"] == "invalid_job" and "invalid job" in bad["error"]


def test_timeout_and_memory_statuses(svc):
    t, m = svc.run([_assert_job("t", "def f():\n    while True: pass", "def check(c): c()", timeout_s=0.5),
                    _assert_job("m", "def f():\n    return len(bytearray(400 << 20))", "def check(c): c()",
                                memory_mb=100)])
    assert t["status"] == "timeout" and t["duration_s"] < 3
    assert m["status"] == "memory"


def test_map_unordered_and_futures(svc):
    jobs = [_assert_job(str(i), f"def f(): return {i}", f"def check(c): assert c() == {i % 2}") for i in range(6)]
    got = {r["id"]: r["status"] for r in svc.map_unordered(jobs)}
    assert got == {str(i): "passed" if i < 2 else "failed" for i in range(6)}


def test_codec_never_builds_custom_objects():
    assert codec.decode(codec.encode({(1, 2): {3}, "b": b"x", "t": (1.5, None)})) == {(1, 2): {3}, "b": b"x",
                                                                                     "t": (1.5, None)}
    with pytest.raises(ValueError):
        codec.decode({"zz": 1})
    class A:
        def __eq__(self, o):
            return True
    with pytest.raises(TypeError):
        codec.encode(A())
    assert codec.stdio_matches("1.0000001\n2", "1 2") and not codec.stdio_matches("1.1 2", "1 2")
    assert not codec.values_match(True, 1) and codec.call_output_matches(3, [3])


def test_rewards_match_reference_formulas():
    res = {"status": "failed", "passed": 3, "total": 4, "compiled": True}
    assert rewards.outcome_reward(res) == 0.75
    assert rewards.outcome_reward(res, alpha=0.5) == pytest.approx(0.5 + 0.5 * 0.75)
    assert rewards.outcome_reward(None) == 0.0
    assert rewards.binary_outcome_reward(res, 1.0, -1.0) == -1.0
    assert rewards.alpha_schedule(0) == 1.0 and rewards.alpha_schedule(50) == 0.5 and rewards.alpha_schedule(500) == 0.1
    r, proc, t = 1.0, [0.5, 1.0, 0.2], 30
    a = 0.7
    expect = a * r + (1 - a) * (0.5 + 0.9 * 1.0 + 0.81 * 0.2) / 3
    assert rewards.aggregate_reward(r, proc, t) == pytest.approx(expect)


def test_cli_contract(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        json.dumps({"id": "a", "program": "print(input()[::-1])",
                    "tests": {"kind": "stdio", "cases": [{"input": "abc", "output": "cba"}]}}),
        "{broken", json.dumps({"id": "c", "program": "def f(): return 1",
                               "tests": {"kind": "call", "fn_name": "f", "cases": [{"args": [], "expected": 2}]}}),
        "[" * 100000]))  # too deeply nested for json: a malformed line like any other
    out = tmp_path / "res.jsonl"
    p = subprocess.run([sys.executable, "-m", "o1jax", "execute", "--jobs", str(jobs), "--out", str(out),
                        "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in res] == [("a", "passed"), (None, "invalid_job"), ("c", "failed"),
                                                     (None, "invalid_job")]
    p = subprocess.run([sys.executable, "-m", "o1jax", "execute", "--jobs", str(tmp_path / "missing.jsonl")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1


def test_each_program_gets_its_own_random_stream(svc):
    """Programs are cloned without CPython's at-fork hooks; the zygote re-seeds `random` itself before each clone."""
    job = {"program": "import random\nprint(random.random())", "tests": {"kind": "stdio", "cases": [
        {"input": "", "output": ""}]}}
    outs = {r["cases"][0]["output"] for r in svc.run([{"id": str(i), **job} for i in range(6)])}
    assert len(outs) == 6, outs


def test_rehearsal_leaves_the_harness_as_it_was():
    """The zygote rehearses a program process's work (harness.rehearse) before forking; afterwards the harness must
    point at the real descriptors again and stdin must be the zygote's."""
    from o1jax.execution import harness
    before = (harness.TASK, harness.REPORT, harness.RPC_IN, harness.RPC_OUT, sys.stdin)
    fds = len(os.listdir("/proc/self/fd"))
    harness.rehearse(rounds=3)
    after = (harness.TASK, harness.REPORT, harness.RPC_IN, harness.RPC_OUT, sys.stdin)
    assert after == before == (3, 4, 5, 6, sys.stdin)
    assert len(os.listdir("/proc/self/fd")) == fds  # every pipe closed


def test_big_jobs_and_big_results_do_not_stall_the_queue():
    """A worker holds its next job while it runs one; a job too big for the pipe must wait until the worker is idle,
    or the service's write and the worker's write of a big result would block each other for good."""
    pad = "#" + "x" * (100 << 10) + "\n"  # a 100 KB job line
    job = {"program": pad + "print('y' * 5000)", "tests": {"kind": "stdio", "cases": [
        {"input": "", "output": "y" * 5000}] * 30}}  # a result of 30 x 4 KB of shown output
    with ExecutionService(workers=1) as s:
        futures = s.submit([{"id": str(i), **job} for i in range(4)])
        res = [f.result(timeout=120) for f in futures]
    assert [r["status"] for r in res] == ["passed"] * 4
    assert len(json.dumps(res[0])) > 100 << 10


def test_programs_compile_as_python_would(svc):
    """No __future__ flag of the harness reaches a program: annotations are evaluated, as under `python prog.py`
    (PEP 563 would leave the string 'int'), in every kind, whoever compiles it (program process or checker)."""
    prog = "def f(x: int) -> int:\n    return f.__annotations__['x'] is int\n"
    stdio, call, asserted = svc.run([
        {"id": "s", "program": prog + "print(f(1))", "tests": {"kind": "stdio", "cases": [
            {"input": "", "output": "True"}]}},
        {"id": "c", "program": prog, "tests": {"kind": "call", "fn_name": "f", "cases": [
            {"args": [1], "expected": True}]}},
        _assert_job("a", prog, "def check(c):\n    assert c(1) is True\n")])
    assert [stdio["status"], call["status"], asserted["status"]] == ["passed"] * 3, (stdio, call, asserted)


def test_values_cross_with_their_types_both_ways(svc):
    """Arguments reach the program as the test built them (tuples, sets, dicts with tuple keys, bytes, complex,
    nested), and come back decoded into fresh builtins of the same types."""
    prog = "def f(*a, **k):\n    return [a, k, [type(x).__name__ for x in a]]\n"
    code = ("def check(c):\n    args = ((1, 2), {3}, frozenset([4]), {(5, 6): [7]}, b'\\x00', 1j, float('inf'))\n"
            "    a, k, names = c(*args, key='v')\n    assert a == args and k == {'key': 'v'}, (a, k)\n"
            "    assert names == ['tuple', 'set', 'frozenset', 'dict', 'bytes', 'complex', 'float'], names\n")
    r = svc.run([_assert_job("t", prog, code)])[0]
    assert r["status"] == "passed", r


def test_repeated_test_code_judges_each_program_afresh(svc):
    """The checker compiles a test source once and reuses the code object: each job still runs it in fresh
    globals, so state one job's test run leaves (here a module-level counter) never reaches the next."""
    code = "seen = []\ndef check(c):\n    seen.append(1)\n    assert len(seen) == 1\n    assert c(2) == 4\n"
    res = svc.run([_assert_job(str(i), f"def f(x): return x * {2 if i % 2 else 3}", code) for i in range(6)])
    assert [r["status"] for r in res] == ["failed", "passed"] * 3, res


def test_close_does_not_hang_on_a_stuck_service():
    """A send blocked on a service that reads nothing (here: stopped) must not keep close() waiting for ever."""
    import signal
    import threading
    s = ExecutionService(workers=1)
    stopped = [pid for pid, parent in s.processes().items() if s._proc.pid in (pid, parent)]  # and its init
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        futures = s.submit([_assert_job(str(i), "#" + "x" * 50000, "def check(c): pass") for i in range(20)])
        closer = threading.Thread(target=s.close, kwargs={"timeout": 2}, daemon=True)
        closer.start()
        closer.join(30)
        assert not closer.is_alive() and s._proc.poll() is not None
        assert all(f.result(timeout=10)["status"] == "sandbox_error" for f in futures)
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

