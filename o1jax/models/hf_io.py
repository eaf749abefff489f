"""Import Hugging Face safetensors (single file or sharded index) onto target shardings, and export an o1jax model
as an HF directory that `AutoModelForCausalLM.from_pretrained` loads cleanly. Driven by `hf_mapping.HF_TABLE`."""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from o1jax.errors import UserError
from o1jax.models.config import ModelConfig
from o1jax.models.hf_mapping import HF_TABLE, IGNORED_HF_KEYS, hf_keys
from o1jax.models.spec import weight_specs

def read_hf_config(path: str) -> ModelConfig:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise UserError(f"{path}: no config.json (not a Hugging Face model directory)")
    try:
        with open(cfg_path) as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path}: not valid JSON ({e})") from None
    return ModelConfig.from_hf(d, where=cfg_path)


def _tensor_index(path: str) -> dict[str, str]:
    """HF key -> safetensors file holding it."""
    idx = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f).get("weight_map")
        if not isinstance(wm, dict):
            raise UserError(f"{idx}: no weight_map")
        return {k: os.path.join(path, v) for k, v in wm.items()}
    single = os.path.join(path, "model.safetensors")
    if not os.path.exists(single):
        raise UserError(f"{path}: no model.safetensors or model.safetensors.index.json "
                        "(PyTorch .bin checkpoints are not supported: re-save with safe_serialization=True)")
    header, _ = _Reader()._open(single)
    return {k: single for k in header if k != "__metadata__"}


_ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


class _Reader:
    """Memory-maps safetensors files (header + raw bytes) and returns float32 numpy slices; bf16 through ml_dtypes,
    so nothing touches an accelerator before its sharding is known."""

    def __init__(self):
        self._files = {}

    def _open(self, file: str):
        if file not in self._files:
            if not os.path.exists(file):
                raise UserError(f"{file}: listed in the safetensors index but missing")
            with open(file, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                try:
                    header = json.loads(f.read(n))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise UserError(f"{file}: not a safetensors file (bad header)") from None
            self._files[file] = (header, np.memmap(file, dtype=np.uint8, mode="r", offset=8 + n))
        return self._files[file]

    def get(self, file: str, key: str) -> np.ndarray:
        import ml_dtypes
        header, data = self._open(file)
        meta = header.get(key)
        if meta is None:
            raise UserError(f"{file}: no tensor {key!r}")
        dt = _ST_DTYPES.get(meta["dtype"])
        if dt is None:
            raise UserError(f"{file}: tensor {key!r} has unsupported dtype {meta['dtype']}")
        start, end = meta["data_offsets"]
        np_dt = ml_dtypes.bfloat16 if dt == "bfloat16" else np.dtype(dt)
        raw = np.asarray(data[start:end])
        if raw.size != int(np.prod(meta["shape"], dtype=np.int64)) * np.dtype(np_dt).itemsize:
            raise UserError(f"{file}: tensor {key!r} is truncated")
        return raw.view(np_dt).reshape(meta["shape"]).astype(np.float32)


def expected_hf_shape(layout, spec, cfg: ModelConfig, stacked: bool) -> tuple[int, ...]:
    """The HF-layout shape of one (layer slice of a) weight, by running the layout backwards on zeros."""
    shape = spec.shape[1:] if stacked else spec.shape
    return tuple(layout.to_hf(np.zeros(shape, np.float32), cfg).shape)


def load_hf_params(path: str, cfg: ModelConfig, shardings: dict | None = None) -> dict[str, jax.Array]:
    """Read every weight listed by HF_TABLE, transform to our layout, stack layers, and place each weight directly
    with its sharding (`shardings` from models.sharding.param_shardings, or None for the default device)."""
    index = _tensor_index(path)
    specs = weight_specs(cfg)
    reader = _Reader()
    dtype = jax.numpy.dtype(cfg.param_dtype)
    params = {}
    used = set()
    for hf_pattern, ours, layout in HF_TABLE:
        if ours not in specs:
            continue
        spec = specs[ours]
        slices = []
        for key in hf_keys(cfg, hf_pattern):
            if key not in index:
                raise UserError(f"{path}: safetensors has no tensor {key!r} (needed for {ours})")
            a = reader.get(index[key], key)
            want = expected_hf_shape(layout, spec, cfg, stacked="{i}" in hf_pattern)
            if tuple(a.shape) != want:
                raise UserError(f"{path}: tensor {key!r} has shape {tuple(a.shape)}, expected {want} "
                                "for this config.json")
            a = layout.to_ours(a, cfg)
            slices.append(a)
            used.add(key)
        arr = np.stack(slices) if "{i}" in hf_pattern else slices[0]
        if arr.shape != spec.shape:
            raise UserError(f"{path}: {hf_pattern} gives {ours} shape {arr.shape}, expected {spec.shape}")
        arr = arr.astype(dtype)
        sh = shardings.get(ours) if shardings else None
        params[ours] = jax.device_put(arr, sh) if sh is not None else jax.numpy.asarray(arr)
    extra = [k for k in index if k not in used and not any(k.endswith(s) for s in IGNORED_HF_KEYS)]
    if extra and not (cfg.tie_word_embeddings and extra == ["lm_head.weight"]):
        raise UserError(f"{path}: unexpected tensors for this architecture, e.g. {extra[0]!r}")
    return params


def to_hf_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Our params -> {HF key: numpy array} (the table read backwards)."""
    specs = weight_specs(cfg)
    out = {}
    for hf_pattern, ours, layout in HF_TABLE:
        if ours not in specs:
            continue
        a = np.asarray(jax.device_get(params[ours]), dtype=np.float32)
        if "{i}" in hf_pattern:
            for i in range(cfg.num_layers):
                out[hf_pattern.format(i=i)] = np.ascontiguousarray(layout.to_hf(a[i], cfg))
        else:
            out[hf_pattern] = np.ascontiguousarray(layout.to_hf(a, cfg))
    return out


def save_hf(params: dict, cfg: ModelConfig, out_dir: str, tokenizer=None, dtype: str = "float32",
            max_shard_bytes: int = 4 << 30):
    """Write config.json, generation_config.json, model.safetensors (sharded with an index past max_shard_bytes)
    and the tokenizer files."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    sd = to_hf_state_dict(params, cfg)
    if dtype == "bfloat16":
        import ml_dtypes
        sd = {k: v.astype(ml_dtypes.bfloat16) for k, v in sd.items()}
    elif dtype == "float16":
        sd = {k: v.astype(np.float16) for k, v in sd.items()}
    hf_cfg = cfg.to_hf()
    hf_cfg["torch_dtype"] = dtype
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({k: v for k, v in gen.items() if v is not None}, f, indent=2)
    # shard by size
    shards, cur, size = [], {}, 0
    for k, v in sd.items():
        if cur and size + v.nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += v.nbytes
    shards.append(cur)
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    else:
        wm = {}
        for n, sh in enumerate(shards):
            name = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(sh, os.path.join(out_dir, name), metadata={"format": "pt"})
            wm.update({k: name for k in sh})
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(v.nbytes for v in sd.values())}, "weight_map": wm}, f,
                      indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
