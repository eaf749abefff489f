"""Typed configs: TOML + section.key=value overrides, each error one line naming the key."""
from __future__ import annotations

import dataclasses
import json

import pytest

from o1jax.config import apply_overrides, load_toml, write_resolved
from o1jax.errors import UserError


@dataclasses.dataclass
class Train:
    steps: int = 10
    lr: float = 1e-4
    remat: bool = False
    name: str = "x"
    schedule: str = "cosine"

    @staticmethod
    def _check_steps(v):
        return "must be positive" if v <= 0 else None


@dataclasses.dataclass
class Cfg:
    train: Train = dataclasses.field(default_factory=Train)


def test_overrides_are_typed():
    c = apply_overrides(Cfg(), ["train.steps=5", "train.lr=3e-4", "train.remat=true", "train.name=run"])
    assert (c.train.steps, c.train.lr, c.train.remat, c.train.name) == (5, 3e-4, True, "run")


@pytest.mark.parametrize("ov,needle", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("trian.steps=3", "unknown config key 'trian.steps'"),
    ("train.steps=abc", "train.steps='abc': expected an integer"),
    ("train.remat=maybe", "train.remat='maybe': expected true or false"),
    ("train.steps=-1", "train.steps=-1: must be positive"),
    ("train.steps", "expected section.key=value"),
])
def test_bad_override_names_the_key(ov, needle):
    with pytest.raises(UserError) as e:
        apply_overrides(Cfg(), [ov])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_toml_and_resolved_config(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nsteps = 7\nlr = 0.5\n")
    c = load_toml(Cfg(), str(p))
    apply_overrides(c, ["train.steps=9"])
    out = write_resolved(c, str(tmp_path / "run"))
    assert json.load(open(out)) == {"train": {"steps": 9, "lr": 0.5, "remat": False, "name": "x",
                                              "schedule": "cosine"}}
    p.write_text("[train]\nsteps = 'seven'\n")
    with pytest.raises(UserError, match="train.steps"):
        load_toml(Cfg(), str(p))
