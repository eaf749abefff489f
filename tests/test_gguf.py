"""GGUF import: tiny files in each quant type against torch holding the same dequantized weights, and the embedded
SmolLM2-135M-Instruct against transformers loading the same file with gguf_file=."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import transformers

import o1jax
from conftest import tiny_torch_model
from gguf_fixtures import write_gguf
from o1jax.models.gguf_io import load_gguf, read_gguf_config

TOKENS = np.array([[3, 50, 17, 8, 91, 44, 2, 60, 33, 12, 7, 80]], dtype=np.int32)


def _big_tiny(flavour):
    """Dims that every block size divides (Q6_K super-blocks are 256 wide)."""
    cls = transformers.Qwen2Config if flavour == "qwen2" else transformers.LlamaConfig
    cfg = cls(vocab_size=97, hidden_size=256, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_quant_types_match_torch(arch, tmp_path):
    """F32, F16, Q8_0, Q4_0, Q4_1 and Q6_K tensors (and llama's permuted q/k) load to the same logits as torch."""
    cycle = ["F16", "Q8_0", "Q4_0", "Q4_1", "Q6_K", "F32"]
    kinds = {}

    def quant_of(key, shape):
        q = cycle[len(kinds) % len(cycle)]
        kinds[key] = q
        return q

    model = _big_tiny(arch)
    path = tmp_path / "tiny.gguf"
    model = write_gguf(model, path, quant_of, arch=arch)
    assert set(kinds.values()) == set(cycle)
    cfg, params = load_gguf(str(path))
    from o1jax.facade import LanguageModel
    ours = np.asarray(LanguageModel(cfg, params, None).logits(TOKENS))
    with torch.no_grad():
        ref = model(torch.as_tensor(TOKENS, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def smollm2():
    return o1jax.load_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def smollm2_torch():
    from o1jax.assets import smollm2_gguf
    g = smollm2_gguf()
    return transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(g), gguf_file=os.path.basename(g),
                                                             dtype=torch.float32).eval()


def test_smollm2_logits_match_transformers(smollm2, smollm2_torch):
    ids = smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a Python function that returns the n-th Fibonacci number."}],
        tokenize=True)
    ours = np.asarray(smollm2.logits([ids]))
    with torch.no_grad():
        ref = smollm2_torch(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_smollm2_greedy_64_tokens_match_transformers_generate(smollm2, smollm2_torch):
    """Greedy decoding by repeated full forward passes (no cache) = transformers' greedy generate."""
    ids = smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a Python function is_prime(n)."}], tokenize=True)
    with torch.no_grad():
        ref = smollm2_torch.generate(torch.tensor([ids]), max_new_tokens=64, min_new_tokens=64, do_sample=False,
                                     pad_token_id=2)[0, len(ids):].tolist()
    seq = list(ids)
    # fixed-length buffer so the forward pass compiles once: causal masking makes the padding invisible
    buf = np.zeros((1, len(ids) + 64), np.int32)
    for _ in range(64):
        buf[0, :len(seq)] = seq
        logits = np.asarray(smollm2.logits(buf))[0, len(seq) - 1]
        nxt = int(logits.argmax())
        if nxt == 2:  # transformers was forced past EOS by min_new_tokens; follow its choice
            logits[2] = -np.inf
            nxt = int(logits.argmax())
        seq.append(nxt)
    assert seq[len(ids):] == ref, (smollm2.tokenizer.decode(seq[len(ids):]), smollm2.tokenizer.decode(ref))


def test_gguf_tokenizer_matches_config(smollm2):
    cfg = read_gguf_config(smollm2.source)
    assert cfg.vocab_size == smollm2.tokenizer.vocab_size == 49152
    assert smollm2.tokenizer.decode(smollm2.tokenizer.encode("def f(x):\n    return x")) == "def f(x):\n    return x"


def test_gguf_tokenizer_equals_transformers_gguf_tokenizer():
    """o1jax rebuilds the GGUF's tokenizer itself (transformers' GGUF reader imports torch, which o1jax does not
    install); it must encode, decode and template exactly as transformers' own GGUF tokenizer does."""
    from o1jax.assets import smollm2_gguf
    from o1jax.models.gguf_tokenizer import gguf_tokenizer
    g = smollm2_gguf()
    ours = gguf_tokenizer(g)
    ref = transformers.AutoTokenizer.from_pretrained(os.path.dirname(g), gguf_file=os.path.basename(g))
    texts = ["hi there", "def f(x):\n    return x**2  # ünïcödé ✓ 中文 🙂", "<|im_start|>user\nhello<|im_end|>",
             "   lots   of\t\tspace\n\n\n", "x=1;y='s' isn't we'll 12345 3.14159", "<repo_name>x<|im_end|> y"]
    for t in texts:
        for special in (True, False):
            assert ours.encode(t, add_special_tokens=special) == ref.encode(t, add_special_tokens=special), t
        ids = ref.encode(t)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write code"}]
    assert ours.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert (ours.bos_token, ours.eos_token, ours.pad_token, len(ours)) == \
        (ref.bos_token, ref.eos_token, ref.pad_token, len(ref))
