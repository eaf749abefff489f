"""o1jax: the o1-Coder loop (arXiv 2412.00154) in JAX/Flax NNX.

    import o1jax
    lm = o1jax.load_model("smollm2-135m-instruct")   # preset, HF dir, .gguf file or o1jax checkpoint dir
    lm.tokenizer; lm.logits(token_ids); lm.generate(prompts, ...)
"""
from o1jax.errors import UserError
from o1jax.models.config import ModelConfig
from o1jax.models.presets import DEFAULT_MODEL, PRESETS

__version__ = "0.1.0"


def load_model(source: str = DEFAULT_MODEL, **kw):
    from o1jax.facade import load_model as _load
    return _load(source, **kw)


__all__ = ["load_model", "ModelConfig", "UserError", "PRESETS", "DEFAULT_MODEL", "__version__"]
