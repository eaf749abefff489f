"""CodeI/O problems (from the `reasoning-gym` wheel's codeio.jsonl.gz, read as a plain file): a task description,
an I/O spec, a reference `main_solution` and an `input_generator`. Tests are made, with fixed seeds, by running the
generator and then the reference in the execution service; rows whose generator or reference fails are rejected."""
from __future__ import annotations

import ast
import json
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm import tqdm

from o1jax.data.problem import Problem, Rejected
from o1jax.data.readers import read_rows

ENTRY_POINT = "main_solution"
GEN_FN = "_o1jax_generate_inputs"
GEN_PRELUDE = "import math\nimport random\nimport string\nimport itertools\nfrom random import Random\n"


class Runner(Protocol):
    """What codeio needs of o1jax.execution.ExecutionService: results in input order."""

    def run(self, jobs: list[dict]) -> list[dict]: ...


@dataclass(frozen=True)
class CodeIORow:
    id: str                    # "codeio/<row index>"
    where: str                 # "codeio.jsonl.gz line n"
    question: str
    code: str                  # reference program defining main_solution
    generator: str             # defines generate_inputs(rng: Random) -> dict
    params: tuple[str, ...]    # main_solution's positional parameters, in order
    n_required: int            # parameters without a default
    meta: dict


def _parse(code: str) -> ast.Module:
    with warnings.catch_warnings():  # dataset code is full of invalid escapes ("\\d" in plain strings)
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # Python < 3.12 category
        return ast.parse(code)


def format_question(description: str, io_spec: str, params: tuple[str, ...]) -> str:
    return (f"{description.strip()}\n\n{io_spec.strip()}\n\n"
            f"Write a Python function `{ENTRY_POINT}({', '.join(params)})` that returns the output described above "
            f"(JSON-serialisable).")


def read_codeio(path: str | None = None, limit: int | None = None) -> tuple[list[CodeIORow], list[Rejected]]:
    """Parse rows (no execution yet). `path=None` takes the file from the reasoning-gym wheel."""
    if path is None:
        from o1jax.assets import codeio_jsonl_gz
        path = codeio_jsonl_gz()
    rows, rejected = [], []
    for i, (where, row, _) in enumerate(read_rows(path)):
        if limit is not None and len(rows) >= limit:
            break
        try:
            if isinstance(row, Exception):
                raise row
            code, gen = row["code_sample"], row["input_generator"]
            fns = {n.name: n for n in _parse(code).body if isinstance(n, ast.FunctionDef)}
            if ENTRY_POINT not in fns:
                raise ValueError(f"code_sample defines no {ENTRY_POINT}")
            if "generate_inputs" not in {n.name for n in _parse(gen).body if isinstance(n, ast.FunctionDef)}:
                raise ValueError("input_generator defines no generate_inputs")
            a = fns[ENTRY_POINT].args
            params = tuple(p.arg for p in a.posonlyargs + a.args)
            meta = {k: row[k] for k in ("difficulty", "clarity", "practice", "educational", "safety")
                    if isinstance(row.get(k), (int, float, str))}
            rows.append(CodeIORow(
                id=f"codeio/{i}", where=where, question=format_question(row["task_description"],
                                                                         row.get("input_output_spec", ""), params),
                code=code, generator=gen, params=params, n_required=len(params) - len(a.defaults), meta=meta))
        except SyntaxError as e:
            rejected.append(Rejected(where, f"code does not parse: {e.msg} (line {e.lineno})"))
        except (KeyError, TypeError, ValueError) as e:
            rejected.append(Rejected(where, f"malformed row: {'missing field ' + str(e) if isinstance(e, KeyError) else e}"))
    return rows, rejected


def case_seed(problem_id: str, j: int, seed: int) -> str:
    """Seed of test input j: a string, so `Random(s)` is the same on every machine and Python process."""
    return f"o1jax-codeio/{seed}/{problem_id}/{j}"


def generator_job(row: CodeIORow, n_inputs: int, seed: int, timeout_s: float) -> dict:
    # The whole reference comes first: generators use its imports and module-level constants.
    program = f"{GEN_PRELUDE}{row.code}\n\n{row.generator}\n\n\ndef {GEN_FN}(seed):\n" \
              f"    return generate_inputs(Random(seed))\n"
    cases = [{"args": [case_seed(row.id, j, seed)], "expected": None} for j in range(n_inputs)]
    return {"id": f"{row.id}/inputs", "program": program, "timeout_s": timeout_s,
            "tests": {"kind": "call", "fn_name": GEN_FN, "cases": cases}}


def _output(case: dict) -> Any:
    """The contract returns a call's value JSON-serialised; accept an already-decoded value too."""
    out = case.get("output")
    return json.loads(out) if isinstance(out, str) else out


def args_of(row: CodeIORow, kwargs: dict) -> list:
    """generate_inputs' dict -> main_solution's positional args (the call kind passes positional args)."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"generate_inputs returned {type(kwargs).__name__}, not a dict")
    unknown = set(kwargs) - set(row.params)
    k = max([row.params.index(key) + 1 for key in kwargs if key in row.params] + [row.n_required])
    missing = [p for p in row.params[:k] if p not in kwargs]
    if unknown or missing:
        raise ValueError(f"generate_inputs keys {sorted(kwargs)} do not match {ENTRY_POINT}{row.params}")
    return [kwargs[p] for p in row.params[:k]]


def make_codeio_tests(rows: list[CodeIORow], runner: Runner, *, n_cases: int = 10, seed: int = 0,
                      timeout_s: float = 2.0, min_cases: int = 1) -> tuple[list[Problem], list[Rejected]]:
    """Two execution rounds: generate 2*n_cases inputs per row (deduplicated, first n_cases kept), then run the
    reference on them and record its return values as `expected`. Deterministic for a given `seed`."""
    problems, rejected = [], []
    gen_results = runner.run([generator_job(r, 2 * n_cases, seed, timeout_s)
                              for r in tqdm(rows, desc="codeio: input jobs", leave=False, disable=len(rows) < 50)])
    ref_jobs, pending = [], []
    for row, res in zip(rows, gen_results):
        inputs, seen, last_err = [], set(), res.get("status")
        for case in res.get("cases") or []:
            if case.get("error") or case.get("output") is None:
                last_err = case.get("error") or last_err
                continue
            try:
                args = args_of(row, _output(case))
            except (ValueError, json.JSONDecodeError) as e:
                last_err = str(e)
                continue
            key = json.dumps(args, sort_keys=True)
            if key not in seen:
                seen.add(key)
                inputs.append(args)
            if len(inputs) == n_cases:
                break
        if len(inputs) < min_cases:
            rejected.append(Rejected(row.where, f"input_generator produced no usable input ({_one_line(last_err)})"))
            continue
        ref_jobs.append({"id": f"{row.id}/reference", "program": row.code, "timeout_s": timeout_s,
                         "tests": {"kind": "call", "fn_name": ENTRY_POINT,
                                   "cases": [{"args": a, "expected": None} for a in inputs]}})
        pending.append((row, inputs))
    for (row, inputs), res in zip(pending, runner.run(ref_jobs)):
        cases = [{"args": a, "expected": _output(c)} for a, c in zip(inputs, res.get("cases") or [])
                 if not c.get("error") and c.get("output") is not None]
        if len(cases) < min_cases:
            err = next((c.get("error") for c in res.get("cases") or [] if c.get("error")), res.get("status"))
            rejected.append(Rejected(row.where, f"reference main_solution fails on generated inputs ({_one_line(err)})"))
            continue
        problems.append(Problem(
            id=row.id, source="codeio", question=row.question, entry_point=ENTRY_POINT, solutions=(row.code,),
            tests={"kind": "call", "fn_name": ENTRY_POINT, "cases": cases}, meta=dict(row.meta, seed=seed)))
    return problems, rejected


def _one_line(msg: Any) -> str:
    lines = [ln for ln in str(msg).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no detail")[:200]
