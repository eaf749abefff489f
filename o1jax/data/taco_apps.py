"""TACO (BAAI/TACO) and APPS (codeparrot/apps): competitive-programming problems in one shared schema (`question`,
`solutions` and `input_output` as JSON strings, `starter_code`; TACO adds tags and skill types). `input_output` with
`fn_name` gives call tests (LeetCode/Codewars style), without it stdio tests. Local files or folders, or the HF hub."""
from __future__ import annotations

import ast
import json
from typing import Any

from o1jax.data.problem import Problem, Rejected, check_tests
from o1jax.data.readers import hub_snapshot, read_rows

HUB = {"taco": ("BAAI/TACO", ["*.parquet", "*.arrow", "*.json", "*.jsonl"]),
       "apps": ("codeparrot/apps", ["*.jsonl"])}


def _json_field(row: dict, key: str, default: Any) -> Any:
    """TACO/APPS store lists and dicts as JSON strings (some TACO columns as Python reprs); empty means absent."""
    v = row.get(key, default)
    if isinstance(v, str):
        if not v.strip():
            return default
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            try:
                return ast.literal_eval(v)
            except (ValueError, SyntaxError):
                raise ValueError(f"field '{key}' is neither JSON nor a Python literal")
    return default if v is None else v


def _text(v: Any) -> str:
    """A stdio input/output: a string, or a list of lines (some TACO rows)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "\n".join(v) + "\n"
    raise ValueError(f"stdio case must be a string or a list of strings, got {type(v).__name__}")


def tests_from_input_output(io: dict, max_tests: int | None = None) -> dict:
    inputs, outputs = io.get("inputs"), io.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("input_output needs 'inputs' and 'outputs' lists")
    if len(inputs) != len(outputs):
        raise ValueError(f"input_output has {len(inputs)} inputs but {len(outputs)} outputs")
    pairs = list(zip(inputs, outputs))[:max_tests]
    if io.get("fn_name"):
        # Outputs stay as published: usually wrapped in a one-element list; the execution service applies TACO's
        # rule (equal, or equal to the single element of a one-element list), as APPS' checker does.
        cases = [{"args": a if isinstance(a, list) else [a], "expected": o} for a, o in pairs]
        return {"kind": "call", "fn_name": str(io["fn_name"]), "cases": cases}
    return {"kind": "stdio", "cases": [{"input": _text(a), "output": _text(o)} for a, o in pairs]}


def _tags(row: dict) -> tuple[str, ...]:
    tags: list[str] = []
    for key in ("tags", "skill_types"):
        v = _json_field(row, key, [])
        tags += [str(t) for t in (v if isinstance(v, list) else [v]) if str(t).strip()]
    return tuple(dict.fromkeys(tags))


def load_taco_apps(source: str, path: str | None = None, *, max_tests: int | None = None,
                   max_solutions: int = 30) -> tuple[list[Problem], list[Rejected]]:
    """Rows -> Problems. Split: from the file/folder name (train/test), else left for `assign_split`.
    `max_solutions` (30, the TCG data recipe) caps the reference solutions kept per problem."""
    assert source in HUB, source
    path = path or hub_snapshot(*HUB[source])
    problems, rejected, seen, counts = [], [], set(), {}
    for where, row, split in read_rows(path):
        i = counts[split] = counts.get(split, -1) + 1  # row index within its split: TACO rows carry no id
        try:
            if isinstance(row, Exception):
                raise row
            question = row["question"]
            if not isinstance(question, str) or not question.strip():
                raise ValueError("empty question")
            tests = tests_from_input_output(_json_field(row, "input_output", {}), max_tests)
            if (why := check_tests(tests)) is not None:
                raise ValueError(why)
            sols = _json_field(row, "solutions", [])
            if not isinstance(sols, list) or not sols or not all(isinstance(s, str) for s in sols):
                raise ValueError("no reference solution ('solutions' must be a non-empty list of strings)")
            raw_id = row.get("problem_id", row.get("id", i))
            pid = f"{source}/{split + '/' if split else ''}{raw_id}"
            if pid in seen:
                pid = f"{pid}#{i}"
            seen.add(pid)
            meta = {k: row[k] for k in ("difficulty", "url", "source", "name", "time_limit", "memory_limit")
                    if isinstance(row.get(k), (str, int, float))}
            problems.append(Problem(
                id=pid, source=source, question=question, tests=tests,
                entry_point=tests.get("fn_name"), starter_code=row.get("starter_code") or "",
                solutions=tuple(sols[:max_solutions]), tags=_tags(row), split=split, meta=meta))
        except (KeyError, TypeError, ValueError) as e:
            rejected.append(Rejected(where, f"malformed row: {'missing field ' + str(e) if isinstance(e, KeyError) else e}"))
    return problems, rejected
