"""Dataset preparation, step 0 of Algorithm 1: load a source, make tests where the source has none (CodeI/O), drop
problems whose reference solution fails its own tests (the paper's data cleaning), split, and write the TFDS
dataset. Used by `o1jax data prepare`; every rejected row is kept with its reason for the summary."""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections import Counter

from tqdm import tqdm

from o1jax.data.codeio import Runner, make_codeio_tests, read_codeio
from o1jax.data.humaneval import load_humaneval
from o1jax.data.jobs import reference_job
from o1jax.data.mbpp import load_mbpp
from o1jax.data.problem import Problem, Rejected, assign_split
from o1jax.data.taco_apps import load_taco_apps
from o1jax.errors import UserError

SOURCES = ("humaneval", "mbpp", "codeio", "taco", "apps")


@dataclasses.dataclass
class Prepared:
    source: str
    problems: list[Problem]
    rejected: list[Rejected]
    path: str | None = None  # TFDS dataset folder, once written


def load_source(source: str, path: str | None = None, *, limit: int | None = None, max_tests: int | None = None,
                runner: Runner | None = None, codeio_cases: int = 10, seed: int = 0,
                timeout_s: float = 2.0) -> tuple[list[Problem], list[Rejected]]:
    """Problems of one source (no cleaning). CodeI/O needs `runner` (an ExecutionService) to make its tests."""
    if source == "humaneval":
        problems, rejected = load_humaneval(path)
    elif source == "mbpp":
        problems, rejected = load_mbpp(path)
    elif source in ("taco", "apps"):
        problems, rejected = load_taco_apps(source, path, max_tests=max_tests)
    elif source == "codeio":
        if runner is None:
            raise ValueError("codeio test generation needs an execution runner")
        rows, rejected = read_codeio(path, limit)
        problems, more = make_codeio_tests(rows, runner, n_cases=codeio_cases, seed=seed, timeout_s=timeout_s)
        rejected += more
    else:
        raise UserError(f"unknown source {source!r}. Fix: use one of {', '.join(SOURCES)}")
    return problems[:limit] if limit is not None else problems, rejected


def _failure(result: dict) -> str:
    first = next((c.get("error") for c in result.get("cases") or [] if c.get("error")), None)
    detail = f"; first error: {str(first).strip().splitlines()[-1][:160]}" if first and str(first).strip() else ""
    return f"{result.get('status')}, {result.get('passed', 0)}/{result.get('total', '?')} tests passed{detail}"


def verify_references(problems: list[Problem], runner: Runner, *, timeout_s: float = 2.0, memory_mb: int = 1024,
                      ) -> tuple[list[Problem], list[Rejected]]:
    """Keep the problems whose first reference solution passes all their tests."""
    jobs = [reference_job(p, timeout_s=timeout_s, memory_mb=memory_mb) for p in problems]
    results = []
    chunk = 64  # chunks only to move the progress bar; the service parallelises inside each
    with tqdm(total=len(jobs), desc="verifying reference solutions", unit="problem", leave=False) as bar:
        for i in range(0, len(jobs), chunk):
            results += runner.run(jobs[i:i + chunk])
            bar.update(len(jobs[i:i + chunk]))
    kept, rejected = [], []
    for p, r in zip(problems, results):
        ok = r.get("status") == "passed" and r.get("passed") == r.get("total")
        if ok:
            kept.append(p)
        else:
            rejected.append(Rejected(p.id, f"reference solution fails its own tests ({_failure(r)})"))
    return kept, rejected


@contextlib.contextmanager
def _service(workers: int | None, allow_weaker: bool = False):
    try:
        from o1jax.execution import ExecutionService
    except ImportError as e:
        raise UserError(f"the execution service is unavailable ({e}). Fix: install o1jax fully (codeio always needs it; other sources run without it under --no-verify)")
    kw = {"allow_weaker": True} if allow_weaker else {}  # hosts without full isolation (no user namespaces)
    with ExecutionService(workers=workers, **kw) as svc:
        yield svc


def prepare(source: str, path: str | None = None, *, data_dir: str | None = None, verify: bool = True,
            write: bool = True, limit: int | None = None, max_tests: int | None = None, workers: int | None = None,
            test_fraction: float = 0.1, codeio_cases: int = 10, seed: int = 0, timeout_s: float = 2.0,
            runner: Runner | None = None, allow_weaker_sandbox: bool = False) -> Prepared:
    """Load, (generate tests,) verify, split and write one source. `runner` overrides the execution service."""
    need_exec = verify or source == "codeio"
    with (contextlib.nullcontext(runner) if runner is not None or not need_exec else _service(workers, allow_weaker_sandbox)) as run:
        problems, rejected = load_source(source, path, limit=limit, max_tests=max_tests, runner=run,
                                         codeio_cases=codeio_cases, seed=seed, timeout_s=timeout_s)
        if verify and problems:
            problems, failed = verify_references(problems, run, timeout_s=timeout_s)
            rejected += failed
    problems = assign_split(problems, test_fraction)
    out = Prepared(source, problems, rejected)
    if write and problems:
        from o1jax.data.tfds_builder import write_dataset
        out.path = write_dataset(problems, source, data_dir)
    return out


def summary(prep: Prepared, max_rejected: int = 20) -> str:
    """Human-readable report: problems per split and format, tests per problem, rejected rows with reasons."""
    ps = prep.problems
    lines = [f"{prep.source}: {len(ps)} problems, {len(prep.rejected)} rejected"]
    if ps:
        splits = Counter(p.split for p in ps)
        fmts = Counter(p.io_format for p in ps)
        nt = [p.num_tests for p in ps]
        lines.append("  splits: " + ", ".join(f"{s} {n}" for s, n in sorted(splits.items())))
        lines.append("  formats: " + ", ".join(f"{s} {n}" for s, n in sorted(fmts.items())))
        lines.append(f"  tests per problem: min {min(nt)}, median {statistics.median(nt):g}, "
                     f"mean {statistics.mean(nt):.1f}, max {max(nt)}")
    if prep.path:
        lines.append(f"  written: {prep.path} (array_record; read with o1jax.data.data_source)")
    if prep.rejected:
        reasons = Counter(r.reason.split(" (")[0].split(":")[0] for r in prep.rejected)
        lines.append("  rejected by reason: " + "; ".join(f"{n} x {k}" for k, n in reasons.most_common()))
        lines += [f"    {r}" for r in prep.rejected[:max_rejected]]
        if len(prep.rejected) > max_rejected:
            lines.append(f"    ... {len(prep.rejected) - max_rejected} more (see --rejected-out)")
    return "\n".join(lines)
