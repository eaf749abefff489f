"""Row readers for local dataset files in their published layouts (json, jsonl, .gz, parquet, arrow, the APPS folder
tree) and, when online, Hugging Face hub snapshots. Every row comes with a `where` label ("file row n") so a loader
can reject one bad row by name instead of failing the whole file."""
from __future__ import annotations

import glob
import gzip
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from o1jax.errors import UserError

Row = tuple[str, Any]  # (where, parsed row dict, or an Exception when the row could not be parsed)
SplitRow = tuple[str, Any, str]  # (where, row, split named by the file or folder: 'train' | 'test' | ... | '')
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow")


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def _json_rows(path: str) -> Iterator[Row]:
    name = os.path.basename(path)
    with _open_text(path) as f:
        head = f.read(1 << 16)
        f.seek(0)
        if head.lstrip().startswith("["):  # one JSON array (MBPP sanitized, TACO converted by convert_taco.py)
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}). Fix: repair or re-download it")
            for i, row in enumerate(rows):
                yield f"{name} row {i}", row
            return
        for i, line in enumerate(f):  # JSON lines: row n = line n+1 (1-based, like an editor)
            if not line.strip():
                continue
            try:
                yield f"{name} line {i + 1}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{name} line {i + 1}", ValueError(f"invalid JSON: {e.msg}")


def _arrow_rows(path: str) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
        import pyarrow as pa
    except ImportError:
        raise UserError(f"{path}: reading parquet/arrow needs pyarrow. Fix: `pip install pyarrow` or convert to jsonl")
    if path.endswith(".parquet"):
        table = pq.read_table(path)
    else:  # HF `datasets` cache files are Arrow IPC streams
        with pa.memory_map(path) as src:
            try:
                table = pa.ipc.open_stream(src).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(src).read_all()
    name = os.path.basename(path)
    for i, row in enumerate(table.to_pylist()):
        yield f"{name} row {i}", row


def _apps_dir_rows(root: str) -> Iterator[Row]:
    """The original APPS release: <split>/<id>/{question.txt, solutions.json, input_output.json, metadata.json,
    starter_code.py}. Rows get the same fields as the HF `codeparrot/apps` jsonl."""
    for d in sorted(glob.glob(os.path.join(root, "*", ""))):
        pid = os.path.basename(os.path.dirname(d))
        where = f"{os.path.basename(root)}/{pid}"
        row: dict[str, Any] = {"problem_id": pid}
        try:
            with open(os.path.join(d, "question.txt"), encoding="utf-8") as f:
                row["question"] = f.read()
            for key, fname in (("solutions", "solutions.json"), ("input_output", "input_output.json")):
                p = os.path.join(d, fname)
                row[key] = open(p, encoding="utf-8").read() if os.path.exists(p) else ""
            p = os.path.join(d, "starter_code.py")
            row["starter_code"] = open(p, encoding="utf-8").read() if os.path.exists(p) else ""
            p = os.path.join(d, "metadata.json")
            if os.path.exists(p):
                row.update({k: v for k, v in json.load(open(p, encoding="utf-8")).items() if k in ("difficulty", "url")})
        except (OSError, json.JSONDecodeError) as e:
            yield where, ValueError(f"unreadable problem folder: {e}")
            continue
        yield where, row


def is_apps_tree(path: str) -> bool:
    return os.path.isdir(path) and bool(glob.glob(os.path.join(path, "*", "question.txt")))


def data_files(path: str) -> list[str]:
    """Data files under `path` (a file, or a folder searched recursively), sorted for a deterministic row order."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder. Fix: pass --path to the downloaded dataset")
    if os.path.isfile(path):
        return [path]
    files = sorted(f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                   if f.endswith(DATA_SUFFIXES) and os.path.isfile(f) and "dataset_info" not in f and
                   not os.path.basename(f).startswith(("state.", ".")))
    if not files:
        raise UserError(f"{path}: no {'/'.join(DATA_SUFFIXES)} files found. Fix: point --path at the data files")
    return files


def read_rows(path: str) -> Iterator[SplitRow]:
    """All rows of one data file or folder as (where, row, split); a bad row yields (where, Exception, split)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder. Fix: pass --path to the downloaded dataset")
    trees = [path] if is_apps_tree(path) else [d for d in sorted(glob.glob(os.path.join(path, "*")))
                                                if is_apps_tree(d)] if os.path.isdir(path) else []
    for tree in trees:  # APPS release: train/ and test/ folders of problem folders
        for where, row in _apps_dir_rows(tree):
            yield where, row, split_of_file(tree)
    if trees:
        return
    for f in data_files(path):
        rows = _arrow_rows(f) if f.endswith((".parquet", ".arrow")) else _json_rows(f)
        for where, row in rows:
            yield where, row, split_of_file(f)


def split_of_file(path: str) -> str:
    """'train'/'test'/'validation' when the file's name or its folder says so (HF layouts: train-00000-of-00009.parquet,
    test.jsonl, apps_test.jsonl, ALL/train/...), else ''. The file name wins over the folder."""
    parts = os.path.normpath(path).replace("\\", "/").split("/")[-2:]
    for part in reversed(parts):
        tokens = re.split(r"[-_.\s]+", part.lower())
        for s in ("train", "test", "validation", "valid", "val"):
            if s in tokens:
                return "validation" if s in ("valid", "val") else s
    return ""


def hub_snapshot(repo_id: str, allow_patterns: list[str]) -> str:
    """Download a dataset snapshot from the Hugging Face hub (online machines only); returns the local folder."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id, repo_type="dataset", allow_patterns=allow_patterns)
    except ImportError:
        raise UserError("huggingface_hub is not installed. Fix: `pip install huggingface_hub` or pass --path")
    except Exception as e:  # offline, gated, renamed: all end the same way for the user
        raise UserError(f"cannot download {repo_id} from the Hugging Face hub ({type(e).__name__}). "
                        f"Fix: download it elsewhere and pass --path")
