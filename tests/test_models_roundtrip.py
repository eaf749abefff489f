"""HF round trip for every decoder flavour: torch save_pretrained -> o1jax import -> logits equal torch (1e-4, f32)
-> o1jax export -> transformers reload (no missing/unexpected keys) -> logits equal again."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import o1jax
from conftest import FLAVOURS, tiny_torch_model

TOKENS = np.array([[5, 17, 3, 88, 42, 9, 60, 1, 2, 33, 71, 14, 90, 25, 7, 45],
                   [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]], dtype=np.int32)


def torch_logits(model, tokens) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_hf_roundtrip_logits(flavour, tmp_path):
    model = tiny_torch_model(flavour)
    src = tmp_path / "src"
    model.save_pretrained(src)
    ref = torch_logits(model, TOKENS)

    lm = o1jax.load_model(str(src))
    ours = np.asarray(lm.logits(TOKENS))
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)

    out = tmp_path / "export"
    lm.export_hf(str(out))
    reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    np.testing.assert_allclose(torch_logits(reloaded.eval(), TOKENS), ref, atol=1e-4, rtol=0)


def test_sharded_safetensors_index(tmp_path):
    """A checkpoint split over several files with model.safetensors.index.json imports the same."""
    model = tiny_torch_model("llama_untied")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ours = np.asarray(o1jax.load_model(str(tmp_path)).logits(TOKENS))
    np.testing.assert_allclose(ours, torch_logits(model, TOKENS), atol=1e-4, rtol=0)


def test_bf16_safetensors_import(tmp_path):
    """bf16 checkpoints (the common HF dtype) are read without torch, values exactly the bf16 weights."""
    model = tiny_torch_model("qwen2_bias").to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    lm = o1jax.load_model(str(tmp_path))
    w = model.model.layers[1].mlp.down_proj.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(lm.params["layers/down"][1]), w.T)


def test_orbax_checkpoint_roundtrip(tmp_path):
    model = tiny_torch_model("gqa_3kv")
    model.save_pretrained(tmp_path / "hf")
    lm = o1jax.load_model(str(tmp_path / "hf"))
    lm.save(str(tmp_path / "ckpt"))
    back = o1jax.load_model(str(tmp_path / "ckpt"))
    assert back.cfg == lm.cfg
    for k in lm.params:
        np.testing.assert_array_equal(np.asarray(back.params[k]), np.asarray(lm.params[k]))


def test_bf16_compute_close_to_f32(tmp_path):
    model = tiny_torch_model("llama_tied")
    model.save_pretrained(tmp_path)
    f32 = np.asarray(o1jax.load_model(str(tmp_path)).logits(TOKENS))
    bf16 = np.asarray(o1jax.load_model(str(tmp_path), dtype="bfloat16", param_dtype="bfloat16").logits(TOKENS))
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - f32).max() < 0.05 * np.abs(f32).max()
    assert (bf16.argmax(-1) == f32.argmax(-1)).mean() > 0.9
