"""The public facade: `o1jax.load_model(source)` -> LanguageModel (tokenizer, logits, generate, save, export).

A source is a preset name, a Hugging Face model directory (or hub id when online), a .gguf file, or an o1jax
checkpoint directory (a model dir written by `o1jax convert`, or a training run dir: its newest checkpoint).
"""
from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from o1jax.errors import UserError
from o1jax.models.config import ModelConfig
from o1jax.models.decoder import forward
from o1jax.models.presets import PRESETS
from o1jax.models.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class LanguageModel:
    """A decoder (config + params as a flat {path: jax.Array} dict) and its tokenizer."""

    def __init__(self, cfg: ModelConfig, params: dict, tokenizer: Tokenizer | None, mesh=None, source: str = ""):
        self.cfg = cfg
        self.params = params
        self.tokenizer = tokenizer
        self.mesh = mesh
        self.source = source

    # --------------------------------------------------------------------------------------------- forward
    @functools.cached_property
    def _logits_fn(self):
        cfg = self.cfg

        @jax.jit
        def f(params, tokens):  # tokens [B, T] int32 -> [B, T, V] float32
            pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
            return forward(params, tokens, pos, cfg)[0]
        return f

    def logits(self, token_ids) -> jax.Array:
        """token_ids [B, T] (or [T]) int -> logits [B, T, V] float32 (a full forward pass, no cache)."""
        t = np.asarray(token_ids, dtype=np.int32)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2:
            raise UserError(f"logits: token_ids must be [B, T], got shape {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= self.cfg.vocab_size):
            raise UserError(f"logits: token ids must be in [0, {self.cfg.vocab_size}), got {t.min()}..{t.max()}")
        return self._logits_fn(self.params, jnp.asarray(t))

    # --------------------------------------------------------------------------------------------- sampling
    def generate(self, prompts, max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int = 0, n: int = 1, stop=None, seed: int = 0, chat: bool = False, **kw):
        """For each prompt (a string or a token-id list), a list of n completions with .text, .token_ids,
        .logprobs and .finish_reason. See o1jax.sampling."""
        from o1jax.sampling import Sampler
        if getattr(self, "_sampler", None) is None:
            self._sampler = Sampler(self)
        return self._sampler.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                      top_k=top_k, n=n, stop=stop, seed=seed, chat=chat, **kw)

    # --------------------------------------------------------------------------------------------- persistence
    def save(self, path: str):
        """Write an o1jax checkpoint directory (params via orbax, config, tokenizer)."""
        from o1jax.models.checkpoint import save_model
        save_model(path, self.cfg, self.params, self.tokenizer)

    def export_hf(self, path: str, dtype: str = "float32"):
        """Write a Hugging Face directory that transformers' AutoModelForCausalLM loads."""
        from o1jax.models.hf_io import save_hf
        save_hf(self.params, self.cfg, path, tokenizer=self.tokenizer, dtype=dtype)

    def __repr__(self):
        c = self.cfg
        return (f"LanguageModel({self.source or c.model_type}: {c.num_params() / 1e6:.1f}M params, L={c.num_layers},"
                f" D={c.hidden_size}, H={c.num_heads}/{c.num_kv_heads}, V={c.vocab_size}, dtype={c.dtype})")


# ------------------------------------------------------------------------------------------------------- loading
def _shardings(cfg, mesh):
    if mesh is None:
        return None
    from o1jax.models.sharding import param_shardings
    return param_shardings(cfg, mesh)


def _hf_tokenizer(path: str, cfg: ModelConfig) -> Tokenizer | None:
    from transformers import AutoTokenizer
    try:
        return Tokenizer(AutoTokenizer.from_pretrained(path), cfg.eos_token_id)
    except Exception as e:  # noqa: BLE001  (a weights-only directory is legal: logits work without a tokenizer)
        log.warning("%s: no usable tokenizer (%s); text in/out is unavailable", path, str(e).splitlines()[0][:100])
        return None


def _resolve_run_dir(path: str) -> str:
    """A training run dir holds checkpoints/; its newest good model checkpoint is a model dir."""
    try:
        from o1jax.training.checkpointing import latest_model_dir  # optional: training may not be installed
    except ImportError:
        return path
    return latest_model_dir(path) or path


def load_model(source: str = "smollm2-135m-instruct", *, dtype: str = "float32", param_dtype: str = "float32",
               mesh=None, random_init: bool = False, seed: int = 0) -> LanguageModel:
    """Load a model. `dtype` is the compute dtype, `param_dtype` the stored one (float32 or bfloat16). With a
    `mesh` (models.sharding.make_mesh), every weight lands directly on its sharding."""
    from o1jax.models import checkpoint, gguf_io, hf_io
    for d, name in ((dtype, "dtype"), (param_dtype, "param_dtype")):
        if d not in ("float32", "bfloat16", "float16"):
            raise UserError(f"{name}={d!r}: expected float32, bfloat16 or float16")
    src = str(source)
    if src in PRESETS:
        cfg, repo = PRESETS[src]
        cfg = cfg.replace(dtype=dtype, param_dtype=param_dtype)
        if random_init:
            from o1jax.models.spec import init_params
            params = init_params(cfg, jax.random.key(seed), _shardings(cfg, mesh))
            return LanguageModel(cfg, params, None, mesh, source=f"{src} (random init)")
        if src == "smollm2-135m-instruct":
            from o1jax.assets import smollm2_gguf
            return load_model(smollm2_gguf(), dtype=dtype, param_dtype=param_dtype, mesh=mesh)
        return load_model(_hub_snapshot(repo, src), dtype=dtype, param_dtype=param_dtype, mesh=mesh)
    if src.endswith(".gguf"):
        if not os.path.isfile(src):
            raise UserError(f"{src}: no such GGUF file")
        cfg = gguf_io.read_gguf_config(src).replace(dtype=dtype, param_dtype=param_dtype)
        _, params = gguf_io.load_gguf(src, _shardings(cfg, mesh), param_dtype)
        tok = Tokenizer(gguf_io.load_gguf_tokenizer(src), cfg.eos_token_id)
        return LanguageModel(cfg, params, tok, mesh, source=src)
    if os.path.isdir(src):
        src_dir = _resolve_run_dir(src)
        if checkpoint.is_model_checkpoint(src_dir):
            cfg = checkpoint.read_model_config(src_dir).replace(dtype=dtype, param_dtype=param_dtype)
            params = checkpoint.load_model_params(src_dir, cfg, _shardings(cfg, mesh))
            tok_dir = os.path.join(src_dir, "tokenizer")
            tok = _hf_tokenizer(tok_dir, cfg) if os.path.isdir(tok_dir) else None
            return LanguageModel(cfg, params, tok, mesh, source=src)
        if os.path.exists(os.path.join(src_dir, "config.json")):
            cfg = hf_io.read_hf_config(src_dir).replace(dtype=dtype, param_dtype=param_dtype)
            params = hf_io.load_hf_params(src_dir, cfg, _shardings(cfg, mesh))
            return LanguageModel(cfg, params, _hf_tokenizer(src_dir, cfg), mesh, source=src)
        raise UserError(f"{src}: not a model directory (no config.json, no {checkpoint.MODEL_JSON})")
    if os.path.exists(src):
        raise UserError(f"{src}: not a model (expected a .gguf file, an HF directory or an o1jax checkpoint)")
    if src.count("/") == 1 and not src.startswith((".", "/")):
        return load_model(_hub_snapshot(src, src), dtype=dtype, param_dtype=param_dtype, mesh=mesh)
    raise UserError(f"{src}: no such file, directory or preset (presets: {', '.join(PRESETS)})")


def _hub_snapshot(repo: str, name: str) -> str:
    """Download an HF repo's config, tokenizer and safetensors (the real loading path when online)."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model",
                                                       "*.txt"])
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{name}: weights are not embedded and the Hugging Face hub is unreachable "
                        f"({type(e).__name__}); pass a local HF directory, or random_init=True for a "
                        "random-weight model of this shape") from None
