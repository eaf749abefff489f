"""Import GGUF files (llama.cpp's format): metadata -> ModelConfig, tensors dequantized on load to float32, the
tokenizer embedded in the file. GGUF names map to HF names by one table; the HF table does the rest."""
from __future__ import annotations

import os

import numpy as np

from o1jax.errors import UserError
from o1jax.models.config import ModelConfig

# GGUF tensor name -> HF key ({i} = block). Llama q/k rows are stored permuted for llama.cpp's interleaved rope.
GGUF_TABLE: list[tuple[str, str]] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("blk.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("blk.{i}.attn_q.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    ("blk.{i}.attn_k.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    ("blk.{i}.attn_v.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    ("blk.{i}.attn_q.bias", "model.layers.{i}.self_attn.q_proj.bias"),
    ("blk.{i}.attn_k.bias", "model.layers.{i}.self_attn.k_proj.bias"),
    ("blk.{i}.attn_v.bias", "model.layers.{i}.self_attn.v_proj.bias"),
    ("blk.{i}.attn_output.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("blk.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("blk.{i}.ffn_gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("blk.{i}.ffn_up.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("blk.{i}.ffn_down.weight", "model.layers.{i}.mlp.down_proj.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
]

SUPPORTED_QUANTS = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                    "Q6_K"}


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def _reader(path: str):
    import gguf
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001  (gguf raises ValueError/struct.error on junk)
        raise UserError(f"{path}: not a readable GGUF file ({type(e).__name__}: {str(e)[:80]})") from None


def read_gguf_config(path: str, reader=None) -> ModelConfig:
    r = reader or _reader(path)
    arch = _field(r, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise UserError(f"{path}: GGUF architecture {arch!r} is not supported (llama, qwen2)")
    g = lambda k, d=None: _field(r, f"{arch}.{k}", d)  # noqa: E731
    heads = int(g("attention.head_count"))
    hidden = int(g("embedding_length"))
    names = {t.name for t in r.tensors}
    vocab = g("vocab_size") or len(r.fields["tokenizer.ggml.tokens"].data)
    rs = None
    if g("rope.scaling.type") == "linear":
        rs = {"type": "linear", "factor": float(g("rope.scaling.factor"))}
    return ModelConfig(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(g("feed_forward_length")),
        num_layers=int(g("block_count")),
        num_heads=heads,
        num_kv_heads=int(g("attention.head_count_kv", heads)),
        head_dim=int(g("attention.key_length", hidden // heads)),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(g("rope.freq_base", 10000.0)),
        rope_scaling=rs,
        max_position_embeddings=int(g("context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        attention_bias=arch == "qwen2",
        model_type=arch,
        bos_token_id=_field(r, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(r, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(r, "tokenizer.ggml.padding_token_id"),
    )


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved rope pairs -> rotate-half halves)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def gguf_hf_state_dict(path: str, cfg: ModelConfig, reader=None) -> dict[str, np.ndarray]:
    """Dequantized tensors under their HF keys, in HF layout ([out, in] for linears)."""
    from gguf.quants import dequantize
    r = reader or _reader(path)
    to_hf = {}
    for g_pat, h_pat in GGUF_TABLE:
        if "{i}" in g_pat:
            for i in range(cfg.num_layers):
                to_hf[g_pat.format(i=i)] = h_pat.format(i=i)
        else:
            to_hf[g_pat] = h_pat
    out = {}
    for t in r.tensors:
        qt = t.tensor_type.name
        if t.name not in to_hf:
            if t.name.startswith("rope_freqs"):
                continue
            raise UserError(f"{path}: unexpected tensor {t.name!r} for a {cfg.model_type} model")
        if qt not in SUPPORTED_QUANTS:
            raise UserError(f"{path}: tensor {t.name} uses quant type {qt}, which o1jax does not dequantize "
                            f"(supported: {', '.join(sorted(SUPPORTED_QUANTS))})")
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists dims innermost first
        w = w.reshape(shape)
        key = to_hf[t.name]
        if cfg.model_type == "llama" and t.name.endswith("attn_q.weight"):
            w = _unpermute(w, cfg.num_heads)
        elif cfg.model_type == "llama" and t.name.endswith("attn_k.weight"):
            w = _unpermute(w, cfg.num_kv_heads)
        out[key] = w
    return out


def load_gguf(path: str, shardings: dict | None = None, param_dtype: str = "float32"):
    """-> (ModelConfig, params on their shardings)."""
    import jax

    from o1jax.models.hf_mapping import HF_TABLE, hf_keys
    from o1jax.models.spec import weight_specs
    r = _reader(path)
    cfg = read_gguf_config(path, r).replace(param_dtype=param_dtype)
    sd = gguf_hf_state_dict(path, cfg, r)
    specs = weight_specs(cfg)
    params = {}
    for hf_pattern, ours, layout in HF_TABLE:
        if ours not in specs:
            continue
        keys = hf_keys(cfg, hf_pattern)
        missing = [k for k in keys if k not in sd]
        if missing:
            raise UserError(f"{path}: GGUF file has no tensor for {missing[0]}")
        from o1jax.models.hf_io import expected_hf_shape
        want = expected_hf_shape(layout, specs[ours], cfg, stacked="{i}" in hf_pattern)
        bad = next((k for k in keys if tuple(sd[k].shape) != want), None)
        if bad is not None:
            raise UserError(f"{path}: tensor for {bad} has shape {tuple(sd[bad].shape)}, expected {want}")
        slices = [layout.to_ours(sd[k], cfg) for k in keys]
        arr = (np.stack(slices) if "{i}" in hf_pattern else slices[0]).astype(jax.numpy.dtype(param_dtype))
        if arr.shape != specs[ours].shape:
            raise UserError(f"{path}: {ours} has shape {arr.shape}, expected {specs[ours].shape}")
        sh = shardings.get(ours) if shardings else None
        params[ours] = jax.device_put(arr, sh) if sh is not None else jax.numpy.asarray(arr)
    return cfg, params


def load_gguf_tokenizer(path: str):
    """The tokenizer embedded in the GGUF file (BPE vocabulary, merges, special tokens, chat template)."""
    from o1jax.models.gguf_tokenizer import gguf_tokenizer
    return gguf_tokenizer(path)
