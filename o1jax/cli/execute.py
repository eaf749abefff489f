"""`o1jax execute`: run programs against test cases in the sandboxed execution service (JSONL in, JSONL out)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from o1jax.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "execute", help="run programs on test cases in the sandbox (JSONL in, JSONL out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run each job of a JSONL file in the sandboxed execution service and write one result line per job, "
            "in input order.\n\n"
            'Job:    {"id": str, "program": str, "tests": T, "timeout_s": 2.0 (per test), "memory_mb": 1024}\n'
            'T:      {"kind": "stdio", "cases": [{"input": str, "output": str}]}\n'
            '      | {"kind": "call", "fn_name": str, "cases": [{"args": [...], "expected": <json>}]}\n'
            '      | {"kind": "assert", "code": str, "entry_point": str}\n'
            'Result: {"id", "status", "passed", "total", "compiled", "cases", "stderr", "duration_s"}; status is one '
            "of passed, failed, timeout, memory, runtime_error, compile_error, invalid_job, sandbox_error.\n"
            "Exit code 0 when every job got a result."))
    p.add_argument("--jobs", required=True, metavar="JOBS.jsonl", help="input jobs, one JSON object per line")
    p.add_argument("--out", metavar="RESULTS.jsonl", help="where to write results (default: stdout)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="parallel sandboxes (default: the number of CPU cores)")
    p.add_argument("--allow-weaker-sandbox", action="store_true",
                   help="run even where this host cannot give every protection (the missing ones are listed)")
    p.set_defaults(func=run)


def _read_jobs(path: str) -> list:
    if not os.path.isfile(path):
        raise UserError(f"--jobs {path}: no such file")
    jobs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                jobs.append(json.loads(line))
            except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply for json
                jobs.append({"__malformed__": f"line {n}: not JSON ({e})"[:2000]})
    return jobs


def run(args) -> int:
    from o1jax.execution.jobs import invalid_result
    from o1jax.execution.service import ExecutionService, SandboxUnavailable

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    jobs = _read_jobs(args.jobs)
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise UserError(f"--out {args.out}: its directory does not exist")
    try:
        svc = ExecutionService(workers=args.workers, allow_weaker=args.allow_weaker_sandbox)
    except SandboxUnavailable as e:
        raise UserError(str(e)) from None
    results: list = [None] * len(jobs)
    with svc:
        runnable = [i for i, j in enumerate(jobs) if not (isinstance(j, dict) and "__malformed__" in j)]
        for i in set(range(len(jobs))) - set(runnable):
            results[i] = invalid_result(None, jobs[i]["__malformed__"])
        futures = svc.submit([jobs[i] for i in runnable])
        index = {id(f): i for f, i in zip(futures, runnable)}
        from concurrent.futures import as_completed
        from tqdm import tqdm
        bar = tqdm(total=len(futures), desc="execute", unit="job", file=sys.stderr, disable=len(futures) < 50)
        for fut in as_completed(futures):
            results[index[id(fut)]] = fut.result()
            bar.update(1)
        bar.close()
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for r in results:
            out.write(json.dumps(r) + "\n")
    finally:
        if args.out:
            out.close()
    return 0 if all(r is not None for r in results) else 1
