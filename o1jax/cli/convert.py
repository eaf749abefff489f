"""`o1jax convert SRC --out DIR`: any model source -> an o1jax checkpoint directory."""
from __future__ import annotations

import os


def add_parser(sub):
    p = sub.add_parser(
        "convert", help="convert an HF dir, .gguf file or preset into an o1jax checkpoint",
        description="Load SRC (a preset name, a Hugging Face model directory, a .gguf file, or an o1jax checkpoint) "
                    "and write it as an o1jax checkpoint directory: o1jax_model.json, params/ (orbax-checkpoint), "
                    "tokenizer/. GGUF tensors are dequantized on load.")
    p.add_argument("src", metavar="SRC", help="preset name, HF model directory, .gguf file or o1jax checkpoint")
    p.add_argument("--out", required=True, metavar="DIR", help="output checkpoint directory")
    p.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="dtype the params are stored in (default float32)")
    p.set_defaults(func=run)


def run(args) -> int:
    from o1jax.errors import UserError
    from o1jax.facade import load_model
    if os.path.exists(args.out) and os.listdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not empty; choose a new directory")
    lm = load_model(args.src, param_dtype=args.param_dtype)
    lm.save(args.out)
    print(f"wrote o1jax checkpoint {args.out} ({lm.cfg.model_type}, {lm.cfg.num_params() / 1e6:.1f}M params)")
    return 0
