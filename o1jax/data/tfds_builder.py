"""TFDS storage of prepared problems: one `o1jax_problems/<source>` dataset per source, array_record files, read back
with `tfds.data_source` (random access, no TensorFlow). Each example is the Problem as JSON plus a few flat
fields for filtering; the heterogeneous, ragged test specs stay lossless that way."""
from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow_datasets as tfds

from o1jax.data.problem import Problem

SOURCES = ("humaneval", "mbpp", "codeio", "taco", "apps")
SPLIT_ORDER = ("train", "validation", "test", "prompt")


def default_data_dir() -> str:
    from o1jax.assets import cache_dir
    return os.environ.get("O1JAX_DATA_DIR") or os.path.join(cache_dir(), "tfds")


class O1jaxProblems(tfds.core.GeneratorBasedBuilder):
    """Prepared code problems. Configs are sources; splits are the Problems' `split` values (train/test/...).
    Built only by `write_dataset` (examples are passed in, already cleaned); any process reads them."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Problem records as JSON (o1jax.data.problem.Problem)."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=s, description=f"{s} problems") for s in SOURCES]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # No checksums or metadata files beside this module. TFDS's lookup of them imports `importlib_resources`,
        # a backport missing from lean (no TensorFlow) installs; nothing here is downloaded, so skip it.
        return None

    def __init__(self, *, problems: list[Problem] | None = None, **kwargs):
        self._problems = problems
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly (not dataset_info_from_configs): that one reads metadata files beside the module.
        return tfds.core.DatasetInfo(
            builder=self,
            description="o1-Coder code problems with execution-service tests (o1jax.data).",
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "io_format": tfds.features.Text(),   # stdio | call | assert
                "num_tests": np.int32,
                "record": tfds.features.Text(),      # Problem.to_json()
            }),
            homepage="https://arxiv.org/abs/2412.00154",
        )

    def _split_generators(self, dl_manager):
        if self._problems is None:
            raise RuntimeError("O1jaxProblems is built by o1jax.data.write_dataset (run `o1jax data prepare`)")
        splits = sorted({p.split for p in self._problems},
                        key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
        return {s: self._generate_examples(s) for s in splits}

    def _generate_examples(self, split: str):
        for p in self._problems:
            if p.split == split:
                # The key fixes the on-disk order (TFDS sorts by its hash): same problems -> same order everywhere.
                yield p.id, {"id": p.id, "io_format": p.io_format, "num_tests": p.num_tests, "record": p.to_json()}


def write_dataset(problems: list[Problem], source: str, data_dir: str | None = None) -> str:
    """Write `problems` (all with a split) as `o1jax_problems/<source>` in array_record; replaces an older build.
    Returns the dataset folder."""
    data_dir = data_dir or default_data_dir()
    if not problems:
        raise ValueError("no problems to write")
    if any(not p.split for p in problems):
        raise ValueError("every problem needs a split (see o1jax.data.problem.assign_split)")
    builder = O1jaxProblems(problems=problems, config=source, data_dir=data_dir, file_format="array_record")
    if os.path.exists(builder.data_dir):
        shutil.rmtree(builder.data_dir)  # a rebuild with new rows or options must not be skipped as "already done"
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return builder.data_dir


class ProblemSource:
    """Random-access problems of one split (len, [i] -> Problem); a grain-compatible data source."""

    def __init__(self, source, split: str):
        self._ds = source
        self.split = split

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> Problem:
        rec = self._ds[i]["record"]
        return Problem.from_json(rec.decode() if isinstance(rec, bytes) else rec)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def data_source(source: str, split: str, data_dir: str | None = None) -> ProblemSource:
    """Prepared problems of `source`/`split` via `tfds.data_source` (array_record; TensorFlow not needed)."""
    from o1jax.errors import UserError
    data_dir = data_dir or default_data_dir()
    info = os.path.join(data_dir, "o1jax_problems", source, str(O1jaxProblems.VERSION), "dataset_info.json")
    if not os.path.exists(info):
        raise UserError(f"no prepared {source} data in {data_dir}. Fix: run `o1jax data prepare {source}` "
                        f"(with the same --data-dir)")
    try:
        ds = tfds.data_source(f"o1jax_problems/{source}", split=split, data_dir=data_dir, download=False)
    except (tfds.core.registered.DatasetNotFoundError, FileNotFoundError, NotImplementedError) as e:
        raise UserError(f"no prepared {source} data in {data_dir} ({type(e).__name__}). "
                        f"Fix: run `o1jax data prepare {source}` (same --data-dir)")
    except ValueError as e:  # unknown split
        raise UserError(f"{source} in {data_dir} has no split {split!r} ({e}). Fix: pick one of {SPLIT_ORDER}")
    return ProblemSource(ds, split)


def load_problems(source: str, split: str, data_dir: str | None = None) -> list[Problem]:
    return list(data_source(source, split, data_dir))
