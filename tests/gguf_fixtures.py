"""Write tiny llama/qwen2 GGUF files (llama.cpp's layout: permuted q/k rows, GGUF names) from a torch model, with
each tensor in a chosen quant type. Q6_K has no quantizer in gguf-py: its blocks are random bytes (any bytes are a
valid Q6_K block), and the torch model gets the dequantized values so both sides hold the same weights."""
from __future__ import annotations

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str:
    if hf in HF_TO_GGUF:
        return HF_TO_GGUF[hf]
    _, _, i, rest = hf.split(".", 3)
    return f"blk.{i}.{HF_TO_GGUF[rest]}"


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_q6k(shape, rng) -> np.ndarray:
    rows, cols = shape
    blocks = cols // 256
    raw = rng.integers(0, 256, size=(rows, blocks, 210), dtype=np.uint8)
    scales = rng.integers(-8, 8, size=(rows, blocks, 16)).astype(np.int8).view(np.uint8)
    raw[..., 192:208] = scales
    d = np.full((rows, blocks), 0.002, np.float16).view(np.uint8).reshape(rows, blocks, 2)
    raw[..., 208:210] = d
    return raw.reshape(rows, blocks * 210)


def write_gguf(model, path, quant_of, arch="llama", extra_tensor=None):
    """quant_of(hf_key, shape) -> quant type name. Returns the torch model with weights set to the dequantized
    values (what any correct reader must see)."""
    cfg = model.config
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
    w.add_token_types([1] * cfg.vocab_size)
    w.add_token_merges([])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    new_sd = {}
    for k, a in sd.items():
        g = gguf_name(k)
        if arch == "llama" and g.endswith("attn_q.weight"):
            a = permute(a, cfg.num_attention_heads)
        elif arch == "llama" and g.endswith("attn_k.weight"):
            a = permute(a, cfg.num_key_value_heads)
        qt = quant_of(k, a.shape) if a.ndim == 2 else "F32"
        if qt == "Q6_K":
            data = random_q6k(a.shape, rng)
        else:
            data = quantize(a, getattr(Q, qt))
        deq = dequantize(data, getattr(Q, qt)).reshape(a.shape).astype(np.float32)
        if arch == "llama" and g.endswith("attn_q.weight"):  # store back un-permuted for the torch side
            deq_hf = permute_inverse(deq, cfg.num_attention_heads)
        elif arch == "llama" and g.endswith("attn_k.weight"):
            deq_hf = permute_inverse(deq, cfg.num_key_value_heads)
        else:
            deq_hf = deq
        new_sd[k] = torch.from_numpy(deq_hf.copy())
        w.add_tensor(g, data, raw_shape=data.shape, raw_dtype=getattr(Q, qt))
    if extra_tensor is not None:
        name, data, qt = extra_tensor
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=getattr(Q, qt))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    model.load_state_dict(new_sd, strict=False)
    return model


def permute_inverse(w: np.ndarray, n_head: int) -> np.ndarray:
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)
