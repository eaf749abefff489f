"""TFDS storage: prepared problems written as array_record and read back with tfds.data_source, without TensorFlow,
in a fresh process; splits and order deterministic."""
import json
import os
import subprocess
import sys

import pytest

from o1jax.data import Problem, load_problems
from o1jax.data.mbpp import load_mbpp
from o1jax.data.taco_apps import load_taco_apps
from o1jax.data.tfds_builder import write_dataset
from o1jax.errors import UserError

FIX = os.path.join(os.path.dirname(__file__), "fixtures")

READ = """
import json, sys
from o1jax.data import data_source
src = data_source(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"ids": [p.id for p in src], "n": len(src], "tf": "tensorflow" in sys.modules}))
""".replace("len(src]", "len(src)")


def test_write_then_read_in_fresh_process_without_tensorflow(tmp_path):
    problems, _ = load_mbpp(os.path.join(FIX, "mbpp_sanitized.json"))
    path = write_dataset(problems, "mbpp", str(tmp_path))
    assert any(f.startswith("o1jax_problems-test.array_record") for f in os.listdir(path))
    out = subprocess.run([sys.executable, "-c", READ, "mbpp", "test", str(tmp_path)], capture_output=True,
                         text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"ids": ["mbpp/17"], "n": 1, "tf": False}
    back = {p.id: p for s in ("train", "validation", "prompt", "test") for p in load_problems("mbpp", s, str(tmp_path))}
    assert back == {p.id: p for p in problems}  # lossless


def test_rewrite_replaces_and_order_is_deterministic(tmp_path):
    problems, _ = load_taco_apps("taco", os.path.join(FIX, "taco"))
    write_dataset(problems, "taco", str(tmp_path))
    first = [p.id for p in load_problems("taco", "train", str(tmp_path))]
    write_dataset(list(reversed(problems)), "taco", str(tmp_path))
    assert [p.id for p in load_problems("taco", "train", str(tmp_path))] == first
    write_dataset([p for p in problems if p.split == "train"][:2], "taco", str(tmp_path))  # a smaller rebuild is not skipped as "already prepared"
    assert len(load_problems("taco", "train", str(tmp_path))) == 2


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="o1jax data prepare apps"):
        load_problems("apps", "train", str(tmp_path))


def test_problem_without_split_is_refused(tmp_path):
    p = Problem(id="x/1", source="taco", question="q", tests={"kind": "stdio", "cases": [{"input": "", "output": ""}]})
    with pytest.raises(ValueError, match="split"):
        write_dataset([p], "taco", str(tmp_path))
