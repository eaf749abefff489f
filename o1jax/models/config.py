"""Decoder architecture config: one dataclass for Llama 2/3, Qwen2/2.5 and SmolLM2, read from and written to
Hugging Face `config.json` (LlamaForCausalLM / Qwen2ForCausalLM)."""
from __future__ import annotations

import dataclasses
from typing import Any

from o1jax.errors import UserError

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "MistralForCausalLM": "llama"}


@dataclasses.dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # H
    num_kv_heads: int  # K (GQA: H % K == 0)
    head_dim: int  # Hd
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # HF dict: llama3 {factor, low_freq_factor, high_freq_factor, original_...}, linear
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v bias (Qwen2)
    model_type: str = "llama"  # "llama" | "qwen2"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise UserError(f"num_attention_heads={self.num_heads} is not a multiple of num_key_value_heads="
                            f"{self.num_kv_heads}")
        if self.model_type not in ("llama", "qwen2"):
            raise UserError(f"model_type {self.model_type!r} is not supported (llama, qwen2)")

    # ---------------------------------------------------------------- Hugging Face config.json
    @classmethod
    def from_hf(cls, d: dict[str, Any], where: str = "config.json") -> "ModelConfig":
        archs = d.get("architectures") or []
        mt = d.get("model_type")
        arch = next((SUPPORTED_ARCHITECTURES[a] for a in archs if a in SUPPORTED_ARCHITECTURES), None)
        if arch is None and mt in ("llama", "qwen2", "mistral"):
            arch = "qwen2" if mt == "qwen2" else "llama"
        if arch is None:
            raise UserError(
                f"{where}: unsupported architecture {archs or mt!r}; o1jax supports "
                f"{', '.join(SUPPORTED_ARCHITECTURES)}")
        try:
            heads = int(d["num_attention_heads"])
            hidden = int(d["hidden_size"])
            rs = d.get("rope_scaling")
            if rs is None and isinstance(d.get("rope_parameters"), dict):  # transformers >= 5 layout
                rp = d["rope_parameters"]
                if rp.get("rope_type", "default") != "default":
                    rs = dict(rp)
            if rs is not None:
                rs = dict(rs)
                rs.pop("rope_theta", None)
                kind = rs.get("rope_type", rs.get("type", "default"))
                if kind == "default":
                    rs = None
                elif kind not in ("llama3", "linear"):
                    raise UserError(f"{where}: rope_scaling type {kind!r} is not supported (llama3, linear)")
            theta = d.get("rope_theta")
            if theta is None and isinstance(d.get("rope_parameters"), dict):
                theta = d["rope_parameters"].get("rope_theta")
            return cls(
                vocab_size=int(d["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(d["intermediate_size"]),
                num_layers=int(d["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(d.get("num_key_value_heads") or heads),
                head_dim=int(d.get("head_dim") or hidden // heads),
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=float(theta if theta is not None else 10000.0),
                rope_scaling=rs,
                max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                attention_bias=(arch == "qwen2") or bool(d.get("attention_bias", False)),
                model_type=arch,
                bos_token_id=d.get("bos_token_id"),
                eos_token_id=d.get("eos_token_id"),
                pad_token_id=d.get("pad_token_id"),
            )
        except KeyError as e:
            raise UserError(f"{where}: missing key {e.args[0]!r}") from None

    def to_hf(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM" if self.model_type == "qwen2" else "LlamaForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": self.param_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        if self.model_type == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        else:
            d["use_sliding_window"] = False
        return d

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def num_params(self) -> int:
        D, F, L, V = self.hidden_size, self.intermediate_size, self.num_layers, self.vocab_size
        qo = 2 * D * self.num_heads * self.head_dim
        kv = 2 * D * self.num_kv_heads * self.head_dim
        per_layer = qo + kv + 3 * D * F + 2 * D
        return V * D * (1 if self.tie_word_embeddings else 2) + L * per_layer + D
