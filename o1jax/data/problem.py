"""The Problem record: one code problem {Q_i, C_i} of Algorithm 1, whatever its source (HumanEval, MBPP, CodeI/O,
TACO, APPS). Tests are stored in the execution service's job format, so sampling, MCTS rewards and evaluation all
run them the same way. A row a loader cannot read becomes a `Rejected` record, never an exception."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

TEST_KINDS = ("stdio", "call", "assert")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem. `tests` is the execution contract's T: {"kind": "stdio", "cases": [{"input", "output"}]},
    {"kind": "call", "fn_name", "cases": [{"args", "expected"}]} or {"kind": "assert", "code", "entry_point"}."""

    id: str                      # globally unique, "<source>/<source id>", e.g. "mbpp/11", "HumanEval/0"
    source: str                  # humaneval | mbpp | codeio | taco | apps
    question: str                # natural-language statement shown to the policy
    tests: dict[str, Any]        # execution-contract test spec (see above)
    entry_point: str | None = None  # function the tests call; None for stdio (read stdin, write stdout) problems
    starter_code: str = ""       # code the answer continues (HumanEval prompt, TACO/APPS starter_code)
    solutions: tuple[str, ...] = ()  # reference solutions C_i (full programs), best first
    tags: tuple[str, ...] = ()
    split: str = ""              # train | test | validation | prompt (set by the loader or by `assign_split`)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # source extras (difficulty, url, ...)

    @property
    def io_format(self) -> str:
        """'stdio', 'call' or 'assert' (the kind of its tests)."""
        return self.tests["kind"]

    @property
    def num_tests(self) -> int:
        """Test cases: cases for stdio/call; assert statements (at least 1) for assert-kind tests."""
        if self.tests["kind"] == "assert":
            return max(1, sum(1 for line in self.tests["code"].splitlines() if line.strip().startswith("assert")))
        return len(self.tests["cases"])

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["solutions"], d["tags"] = list(self.solutions), list(self.tags)
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Problem":
        d = json.loads(text)
        d["solutions"], d["tags"] = tuple(d.get("solutions", ())), tuple(d.get("tags", ()))
        return cls(**d)

    def replace(self, **changes) -> "Problem":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A source row that did not become a Problem, and why (malformed, or a reference failing its own tests)."""

    where: str   # "file.jsonl row 17" or "HumanEval/3"
    reason: str  # one line

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def check_tests(tests: Any) -> str | None:
    """Why `tests` is not a valid execution-contract test spec, or None when it is."""
    if not isinstance(tests, dict) or tests.get("kind") not in TEST_KINDS:
        return f"tests kind must be one of {TEST_KINDS}"
    kind = tests["kind"]
    if kind == "assert":
        if not isinstance(tests.get("code"), str) or not tests["code"].strip():
            return "assert tests need non-empty 'code'"
        return None if isinstance(tests.get("entry_point"), str) else "assert tests need 'entry_point'"
    cases = tests.get("cases")
    if not isinstance(cases, list) or not cases:
        return "no test cases"
    if kind == "stdio":
        if not all(isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str)
                   for c in cases):
            return "stdio cases need string 'input' and 'output'"
        return None
    if not isinstance(tests.get("fn_name"), str) or not tests["fn_name"]:
        return "call tests need 'fn_name'"
    if not all(isinstance(c, dict) and isinstance(c.get("args"), list) and "expected" in c for c in cases):
        return "call cases need a list 'args' and 'expected'"
    return None


def hash_split(problem_id: str, test_fraction: float = 0.1, salt: str = "o1jax") -> str:
    """Deterministic train/test split for sources without an official one: sha256(salt/id) -> 'train' | 'test'.
    Stable across runs, machines and row order (unlike a seeded shuffle), and adding rows never moves old ones."""
    h = int.from_bytes(hashlib.sha256(f"{salt}/{problem_id}".encode()).digest()[:8], "big")
    return "test" if h / 2**64 < test_fraction else "train"


def assign_split(problems: list[Problem], test_fraction: float = 0.1) -> list[Problem]:
    """Fill in `split` (hash_split) where a loader left it empty."""
    return [p if p.split else p.replace(split=hash_split(p.id, test_fraction)) for p in problems]
