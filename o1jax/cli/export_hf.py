"""`o1jax export-hf CHECKPOINT --out DIR`: an o1jax checkpoint (or training run: its newest checkpoint) -> a
Hugging Face model directory that transformers loads."""
from __future__ import annotations

import os


def add_parser(sub):
    p = sub.add_parser(
        "export-hf", help="export an o1jax checkpoint or training run to a Hugging Face directory",
        description="Write config.json, generation_config.json, model.safetensors (sharded past 4 GB) and the "
                    "tokenizer files, loadable with transformers.AutoModelForCausalLM.from_pretrained. A training "
                    "run directory exports its newest good checkpoint (LoRA merged).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="o1jax checkpoint directory, training run directory, or any model source")
    p.add_argument("--out", required=True, metavar="DIR", help="output Hugging Face directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved safetensors (default float32)")
    p.set_defaults(func=run)


def run(args) -> int:
    from o1jax.errors import UserError
    from o1jax.facade import load_model
    if not os.path.exists(args.checkpoint):
        raise UserError(f"{args.checkpoint}: no such checkpoint directory")
    if os.path.exists(args.out) and os.listdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not empty; choose a new directory")
    lm = load_model(args.checkpoint)
    lm.export_hf(args.out, dtype=args.dtype)
    print(f"wrote Hugging Face model {args.out}")
    return 0
