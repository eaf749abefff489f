"""Shared test helpers: tiny random transformers models of each supported flavour, saved with save_pretrained."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CLI commands enable JAX's persistent compilation cache; tests stay hermetic (test_compilation_cache turns it on).
os.environ.setdefault("O1JAX_COMPILATION_CACHE", "off")

# Tests compare exact token choices against float32 references; on GPUs JAX's default matmul precision is lower
# (TF32-like) and flips near-tied argmaxes. Pin full precision so the suite means the same on every backend.
import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

FLAVOURS = {
    # name: (transformers config class name, kwargs)
    "llama_untied": ("LlamaConfig", dict(tie_word_embeddings=False)),
    "llama_tied": ("LlamaConfig", dict(tie_word_embeddings=True)),
    "llama3_rope": ("LlamaConfig", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                       "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 32},
                                         rope_theta=500000.0, max_position_embeddings=256)),
    "qwen2_bias": ("Qwen2Config", dict(tie_word_embeddings=False)),
    "gqa_3kv": ("LlamaConfig", dict(num_attention_heads=6, num_key_value_heads=3, hidden_size=48, head_dim=8)),
}


def tiny_torch_model(flavour: str, seed: int = 0):
    import torch
    import transformers
    cls_name, kw = FLAVOURS[flavour]
    base = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)
    base.update(kw)
    cfg = getattr(transformers, cls_name)(**base)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # norms and biases default to 1 / 0: randomise so a mapping error cannot hide
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture
def tiny_hf_dir(tmp_path):
    def make(flavour: str, **save_kw) -> str:
        d = tmp_path / f"hf_{flavour}"
        tiny_torch_model(flavour).save_pretrained(d, **save_kw)
        return str(d)
    return make
