"""Loaders on small fixtures in each source's published schema: fields mapped, splits, malformed rows reported by
file and row instead of raised."""
import json
import os

import pytest

from o1jax.data import Problem, check_tests, hash_split
from o1jax.data.humaneval import load_humaneval
from o1jax.data.mbpp import load_mbpp, mbpp_split
from o1jax.data.readers import read_rows
from o1jax.data.taco_apps import load_taco_apps
from o1jax.errors import UserError

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def by_id(problems):
    return {p.id: p for p in problems}


def test_humaneval_fixture_maps_fields_and_rejects_row_without_entry_point():
    problems, rejected = load_humaneval(os.path.join(FIX, "humaneval_mini.jsonl"))
    assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1"]
    p = problems[0]
    assert p.entry_point == "below_zero" and p.split == "test" and p.io_format == "assert"
    assert p.tests["entry_point"] == "below_zero" and "def check(candidate)" in p.tests["code"]
    assert p.solutions[0].startswith(p.starter_code) and "balance" in p.solutions[0]
    assert len(rejected) == 1 and "humaneval_mini.jsonl line 3" in rejected[0].where
    assert "entry_point" in rejected[0].reason


def test_humaneval_installed_package_has_164_problems():
    problems, rejected = load_humaneval()
    assert len(problems) == 164 and not rejected
    assert all(check_tests(p.tests) is None for p in problems)


def test_mbpp_sanitized_schema_splits_and_malformed_row():
    problems, rejected = load_mbpp(os.path.join(FIX, "mbpp_sanitized.json"))
    ps = by_id(problems)
    assert set(ps) == {"mbpp/2", "mbpp/17", "mbpp/606", "mbpp/520"}
    assert (ps["mbpp/2"].split, ps["mbpp/17"].split, ps["mbpp/520"].split, ps["mbpp/606"].split) == \
        ("prompt", "test", "validation", "train")
    p = ps["mbpp/606"]
    assert p.entry_point == "radian_degree"
    assert p.tests["code"].startswith("import math")  # test_imports run before the asserts
    assert "    assert math.isclose(candidate(90)" in p.tests["code"]
    assert "assert math.isclose(radian_degree(90)" in p.question  # the tests fix the name the model must use
    assert p.num_tests == 2
    assert len(rejected) == 1
    assert rejected[0].where == "mbpp_sanitized.json row 4" and "test_list" in rejected[0].reason


def test_mbpp_full_schema_and_invalid_json_line():
    problems, rejected = load_mbpp(os.path.join(FIX, "mbpp_full.jsonl"))
    assert [p.id for p in problems] == ["mbpp/1", "mbpp/603"]
    assert problems[1].num_tests == 3  # challenge tests are opt-in
    assert load_mbpp(os.path.join(FIX, "mbpp_full.jsonl"), with_challenge=True)[0][1].num_tests == 4
    assert [r.where for r in rejected] == ["mbpp_full.jsonl line 2"] and "invalid JSON" in rejected[0].reason


def test_mbpp_split_boundaries():
    assert [mbpp_split(i) for i in (1, 10, 11, 510, 511, 600, 601, 974)] == \
        ["prompt", "prompt", "test", "test", "validation", "validation", "train", "train"]


def test_taco_stdio_call_and_malformed_rows():
    problems, rejected = load_taco_apps("taco", os.path.join(FIX, "taco"))
    ps = by_id(problems)
    assert set(ps) == {"taco/train/0", "taco/train/1", "taco/train/2", "taco/train/4", "taco/test/0"}
    add = ps["taco/train/0"]
    assert add.io_format == "stdio" and add.entry_point is None and add.split == "train"
    assert add.tests["cases"][1] == {"input": "3 4\n", "output": "7\n"}
    assert add.tags == ("Mathematics", "Implementation")  # TACO stores tags as Python reprs
    vow = ps["taco/train/1"]
    assert vow.tests == {"kind": "call", "fn_name": "count_vowels",
                         "cases": [{"args": ["hello"], "expected": [2]}, {"args": ["xyz"], "expected": [0]},
                                   {"args": ["aeiou"], "expected": [5]}]}
    assert vow.entry_point == "count_vowels" and vow.starter_code.startswith("def count_vowels")
    lines = ps["taco/train/2"].tests["cases"][0]
    assert lines == {"input": "2\n", "output": "1\n2\n"}  # list-of-lines cases joined
    assert ps["taco/test/0"].split == "test"
    assert len(rejected) == 1 and rejected[0].where == "train.jsonl line 4"
    assert "2 inputs but 1 outputs" in rejected[0].reason


def test_taco_max_tests_caps_cases():
    problems, _ = load_taco_apps("taco", os.path.join(FIX, "taco"), max_tests=1)
    assert all(p.num_tests == 1 for p in problems)


def test_apps_folder_tree_and_jsonl():
    problems, rejected = load_taco_apps("apps", os.path.join(FIX, "apps_tree"))
    ps = by_id(problems)
    assert set(ps) == {"apps/train/0000", "apps/test/0002"}
    assert ps["apps/test/0002"].tests["fn_name"] == "rev" and ps["apps/test/0002"].starter_code == "def rev(s):\n"
    assert ps["apps/train/0000"].meta["difficulty"] == "introductory"
    assert len(rejected) == 1 and rejected[0].where == "train/0001" and "no reference solution" in rejected[0].reason
    problems, rejected = load_taco_apps("apps", os.path.join(FIX, "apps_test.jsonl"))
    assert [p.id for p in problems] == ["apps/test/4000"]
    assert rejected[0].where == "apps_test.jsonl line 2" and "input_output" in rejected[0].reason


def test_missing_path_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="nope.jsonl: no such file"):
        list(read_rows(os.path.join(FIX, "nope.jsonl")))


def test_broken_json_array_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"task_id": 1,')
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        load_mbpp(str(bad))


def test_problem_json_round_trip():
    problems, _ = load_taco_apps("taco", os.path.join(FIX, "taco"))
    for p in problems:
        q = Problem.from_json(p.to_json())
        assert q == p
        json.loads(p.to_json())


def test_hash_split_is_deterministic_and_near_fraction():
    ids = [f"codeio/{i}" for i in range(2000)]
    a = [hash_split(i, 0.1) for i in ids]
    assert a == [hash_split(i, 0.1) for i in reversed(ids)][::-1]
    assert 0.07 < a.count("test") / len(a) < 0.13
