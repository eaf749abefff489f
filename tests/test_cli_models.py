"""`o1jax convert` / `o1jax export-hf` end to end, and every bad model input: one line, exit code 2, no traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import tiny_torch_model


def o1jax_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "o1jax", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stderr[-1500:])
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr, res.stderr
    assert lines and lines[-1].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


def test_help_lists_subcommands():
    res = o1jax_cli("--help")
    assert res.returncode == 0
    for sub in ("convert", "export-hf"):
        assert sub in res.stdout
    assert o1jax_cli("convert", "--help").returncode == 0


def test_convert_then_export_roundtrip(tmp_path):
    model = tiny_torch_model("llama_tied")
    model.save_pretrained(tmp_path / "hf")
    res = o1jax_cli("convert", str(tmp_path / "hf"), "--out", str(tmp_path / "ck"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ck" / "o1jax_model.json").exists()
    res = o1jax_cli("export-hf", str(tmp_path / "ck"), "--out", str(tmp_path / "hf2"))
    assert res.returncode == 0, res.stderr
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    x = torch.arange(10)[None]
    with torch.no_grad():
        np.testing.assert_allclose(back(x).logits.numpy(), model(x).logits.numpy(), atol=1e-5)


def test_missing_path(tmp_path):
    assert_one_line_error(o1jax_cli("convert", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "nope")


def test_unknown_preset(tmp_path):
    assert_one_line_error(o1jax_cli("convert", "llama-99b", "--out", str(tmp_path / "o")), "llama-99b", "presets")


def test_unsupported_architecture(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"],
                                                            "model_type": "gpt2"}))
    assert_one_line_error(o1jax_cli("convert", str(tmp_path / "m"), "--out", str(tmp_path / "o")),
                          "GPT2LMHeadModel", "config.json")


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_bad_safetensors(damage, tmp_path):
    model = tiny_torch_model("llama_untied")
    model.save_pretrained(tmp_path / "m")
    f = tmp_path / "m" / "model.safetensors"
    sd = load_file(f)
    key = "model.layers.1.mlp.up_proj.weight"
    if damage == "missing":
        del sd[key]
    else:
        sd[key] = sd[key][:, :5].contiguous()
    save_file(sd, f, metadata={"format": "pt"})
    assert_one_line_error(o1jax_cli("convert", str(tmp_path / "m"), "--out", str(tmp_path / "o")), key)


def test_unsupported_gguf_quant(tmp_path):
    from gguf_fixtures import write_gguf
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    iq = np.zeros((4, 66), np.uint8)  # 4 rows x one 256-wide IQ2_XXS block
    path = tmp_path / "iq.gguf"
    write_gguf(model, path, lambda k, s: "F16", extra_tensor=("blk.0.ffn_gate_exps.weight", iq, "IQ2_XXS"))
    # the extra tensor is both unknown and IQ2_XXS; make a file whose *known* tensor is IQ2_XXS instead
    path2 = tmp_path / "iq2.gguf"
    write_gguf(transformers.AutoModelForCausalLM.from_config(cfg), path2,
               lambda k, s: "F16" if "up_proj" not in k else "F32", extra_tensor=None)
    import gguf
    r = gguf.GGUFReader(str(path2))
    names = [t.name for t in r.tensors]
    assert "blk.0.ffn_up.weight" in names
    # rewrite: same file but with ffn_up as IQ2_XXS bytes
    w = gguf.GGUFWriter(str(path), "llama")
    for field in r.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        w.add_key_value(field.name, field.contents(), field.types[0] if len(field.types) == 1 else
                        field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    for t in r.tensors:
        if t.name == "blk.0.ffn_up.weight":
            w.add_tensor(t.name, np.zeros((256, 66), np.uint8), raw_shape=(256, 66),
                         raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
        else:
            w.add_tensor(t.name, np.asarray(t.data), raw_shape=np.asarray(t.data).shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_one_line_error(o1jax_cli("convert", str(path), "--out", str(tmp_path / "o")), "IQ2_XXS",
                          "blk.0.ffn_up.weight")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "junk.gguf"
    p.write_bytes(os.urandom(1000))
    assert_one_line_error(o1jax_cli("convert", str(p), "--out", str(tmp_path / "o")), "junk.gguf")


def test_cli_compilation_cache_is_written_then_reused(tmp_path):
    """`o1jax sample` stores its compiled programs in $O1JAX_COMPILATION_CACHE, and a second identical run loads the
    decode loop from there instead of compiling it; `off` disables the cache."""
    from o1jax.assets import smollm2_gguf
    cache = tmp_path / "jaxcache"
    args = [sys.executable, "-m", "o1jax", "-v", "sample", "--model", smollm2_gguf(), "--prompt", "def add(a, b):",
            "--max-new-tokens", "4"]

    def run(where):
        res = subprocess.run(args, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, O1JAX_COMPILATION_CACHE=str(where)), cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stderr

    first = run(cache)
    assert "cache hit for 'jit__segment'" not in first
    assert any(name.startswith("jit__segment") for name in os.listdir(cache))  # took > 0.5 s to compile: stored
    assert "cache hit for 'jit__segment'" in run(cache)
    assert "cache hit" not in run("off") and not os.path.exists(tmp_path / "off")
