"""o1jax model checkpoints: `o1jax_model.json` (architecture), `params/` (orbax-checkpoint v1 pytree, restored
straight onto target shardings) and `tokenizer/` (HF tokenizer files)."""
from __future__ import annotations

import dataclasses
import json
import os

import jax

from o1jax.errors import UserError
from o1jax.models.config import ModelConfig

MODEL_JSON = "o1jax_model.json"
FORMAT_VERSION = 1


def nest(flat: dict) -> dict:
    """{'layers/q': a} -> {'layers': {'q': a}} (orbax names directories after keys)."""
    out: dict = {}
    for k, v in flat.items():
        d = out
        *head, last = k.split("/")
        for h in head:
            d = d.setdefault(h, {})
        d[last] = v
    return out


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def is_model_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MODEL_JSON))


def save_model(path: str, cfg: ModelConfig, params: dict, tokenizer=None):
    from orbax.checkpoint import v1 as ocp
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    ocp.save(os.path.join(path, "params"), nest(params), overwrite=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(os.path.join(path, "tokenizer"))
    if jax.process_index() == 0:
        with open(os.path.join(path, MODEL_JSON), "w") as f:
            json.dump({"format_version": FORMAT_VERSION, "config": dataclasses.asdict(cfg)}, f, indent=2)


def read_model_config(path: str) -> ModelConfig:
    try:
        with open(os.path.join(path, MODEL_JSON)) as f:
            meta = json.load(f)
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{path}: o1jax checkpoint format {meta.get('format_version')} is not supported "
                            f"(expected {FORMAT_VERSION})")
        return ModelConfig(**meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path}/{MODEL_JSON}: malformed ({e})") from None


def load_model_params(path: str, cfg: ModelConfig, shardings: dict | None = None) -> dict:
    from orbax.checkpoint import v1 as ocp

    from o1jax.models.spec import abstract_params
    abstract = nest(abstract_params(cfg, shardings))
    if shardings is None:
        dev = jax.devices()[0]
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                               sharding=jax.sharding.SingleDeviceSharding(dev)),
                                abstract)
    try:
        tree = ocp.load(os.path.join(os.path.abspath(path), "params"), abstract)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{path}: cannot restore params ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None
    return flatten(tree)
