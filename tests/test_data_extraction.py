"""Code extraction from tricky completions, and (problem, code) -> execution job, checked by running the jobs."""
import os
import sys

import pytest

from o1jax.data import extract_code, make_job
from o1jax.data.extraction import choose_entry_point
from o1jax.data.humaneval import load_humaneval
from o1jax.data.mbpp import load_mbpp
from o1jax.data.taco_apps import load_taco_apps

sys.path.insert(0, os.path.dirname(__file__))
from fixtures.local_runner import LocalRunner  # noqa: E402

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
F = "```"


def test_single_block():
    assert extract_code(f"Here:\n{F}python\ndef f(x):\n    return x\n{F}\nDone.") == "def f(x):\n    return x\n"


def test_last_block_defining_entry_point_beats_usage_example_block():
    text = (f"{F}python\ndef helper():\n    return 1\n{F}\n{F}python\ndef encode(s):\n    return s\n{F}\n"
            f"Example:\n{F}python\nprint(encode('hello'))\n{F}\n")
    assert extract_code(text, "encode") == "def encode(s):\n    return s\n"
    # without an entry point: the last block that defines a function
    assert extract_code(text) == "def encode(s):\n    return s\n"


def test_last_of_several_defining_blocks():
    text = f"{F}python\ndef f():\n    return 1\n{F}\nBetter:\n{F}python\ndef f():\n    return 2\n{F}"
    assert "return 2" in extract_code(text, "f")


def test_unterminated_block_at_end():
    text = f"### Step 3: code (Action 3)\n{F}python\ndef f(x):\n    return x + 1\n"
    assert extract_code(text, "f") == "def f(x):\n    return x + 1\n"


def test_pseudo_blocks_are_not_code_and_untagged_blocks_are_fallback():
    assert extract_code(f"{F}pseudo\nFunction f(x): return x\n{F}") is None
    assert extract_code(f"{F}\ndef g():\n    pass\n{F}") == "def g():\n    pass\n"
    assert extract_code(f"{F}pseudo\nplan\n{F}\n{F}python\nprint(1)\n{F}") == "print(1)\n"


def test_no_block():
    assert extract_code("I cannot solve this problem.") is None
    assert extract_code("") is None
    assert extract_code("def f(x):\n    return 2 * x\n", "f") == "def f(x):\n    return 2 * x\n"
    body = "    return x + y\n"  # a base model continuing a HumanEval prompt
    assert extract_code(body, "add", "def add(x, y):\n    \"\"\"doc\"\"\"\n") == body


def test_choose_entry_point_from_generated_code():
    assert choose_entry_point("def a():\n    pass\ndef b():\n    pass\n", "b") == "b"
    assert choose_entry_point("def helper():\n    pass\ndef solve(x):\n    pass\n", "count") == "solve"
    assert choose_entry_point("x = 1\n", "count") == "count"


@pytest.fixture(scope="module")
def he():
    return {p.id: p for p in load_humaneval(os.path.join(FIX, "humaneval_mini.jsonl"))[0]}


def test_humaneval_job_body_vs_full_function(he):
    p = he["HumanEval/0"]
    body = "    bal = 0\n    for o in operations:\n        bal += o\n        if bal < 0:\n            return True\n" \
           "    return False\n"
    job = make_job(p, body)
    assert job["program"] == p.starter_code + body and job["tests"]["kind"] == "assert"
    assert job["timeout_s"] == 2.0 and job["memory_mb"] == 1024 and job["id"] == "HumanEval/0"
    full = "def below_zero(operations: List[int]) -> bool:\n    return min([0] + [sum(operations[:i + 1]) " \
           "for i in range(len(operations))]) < 0\n"
    job2 = make_job(p, full, job_id="x", timeout_s=1)
    assert job2["program"].startswith("from typing import List\n")  # the prompt's imports are kept
    wrong = "def below_zero(operations):\n    return True\n"
    res = LocalRunner().run([job, job2, make_job(p, wrong)])
    assert [r["status"] for r in res] == ["passed", "passed", "runtime_error"]


def test_renamed_function_is_aliased_to_entry_point():
    p = {x.id: x for x in load_mbpp(os.path.join(FIX, "mbpp_sanitized.json"))[0]}["mbpp/17"]
    job = make_job(p, "def perimeter(side):\n    return 4 * side\n")
    assert job["program"].endswith("square_perimeter = perimeter\n")
    assert LocalRunner().run([job])[0]["status"] == "passed"


def test_leetcode_class_solution_gets_a_function_shim():
    p = {x.id: x for x in load_taco_apps("taco", os.path.join(FIX, "taco"))[0]}["taco/test/0"]
    code = "class Solution:\n    def maxOf(self, nums):\n        return max(nums)\n"
    r = LocalRunner().run([make_job(p, code, max_tests=1)])[0]
    assert r["status"] == "passed" and r["total"] == 1


def test_stdio_job_runs_code_as_is():
    p = {x.id: x for x in load_taco_apps("taco", os.path.join(FIX, "taco"))[0]}["taco/train/0"]
    job = make_job(p, "a, b = map(int, input().split())\nprint(a + b)\n")
    assert job["program"] == "a, b = map(int, input().split())\nprint(a + b)\n"
    assert job["tests"] == p.tests and job["tests"] is not p.tests  # a copy: callers may edit jobs freely
