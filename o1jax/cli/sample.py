"""`o1jax sample`: generate completions from a model (the policy the loop samples from), printed or as JSON lines."""
from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="generate completions for prompts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample completions from a model: greedy (--temperature 0, the default) or temperature / top-k / "
                    "top-p sampling, n per prompt, stopping at EOS, --max-new-tokens or a --stop string (the text "
                    "then ends with the stop string).",
        epilog="examples:\n"
               "  o1jax sample --prompt 'Write a Python function that reverses a string.' --chat\n"
               "  o1jax sample --model qwen2.5-coder-0.5b --prompt 'def quicksort(xs):' --n 4 --temperature 0.8 "
               "--top-p 0.95 --stop '\\n\\n'\n"
               "  o1jax sample --prompt-file prompts.txt --json > samples.jsonl")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="preset name, HF directory, .gguf file or o1jax checkpoint (default: %(default)s)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several)")
    p.add_argument("--prompt-file", help="a text file with one prompt per line")
    p.add_argument("--chat", action="store_true", help="wrap each prompt as a user message in the chat template")
    p.add_argument("--n", type=int, default=1, help="samples per prompt (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="default %(default)s")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass, in (0, 1] (default 1: off)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (default 0: off)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeat for several; '\\n' escapes ok)")
    p.add_argument("--seed", type=int, default=0, help="default %(default)s: same seed, same samples")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute and param dtype (float32 is fastest on CPU)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per completion: prompt, sample, text, finish_reason, token_ids, logprobs")
    p.set_defaults(func=run)


def run(args) -> int:
    from o1jax import load_model
    from o1jax.errors import UserError
    prompts = list(args.prompt)
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                prompts += [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise UserError(f"--prompt-file {args.prompt_file}: {e.strerror}") from None
    if not prompts:
        raise UserError("no prompt: pass --prompt TEXT (repeatable) or --prompt-file FILE")
    stops = [s.encode("utf-8").decode("unicode_escape") for s in args.stop]
    lm = load_model(args.model, dtype=args.dtype, param_dtype=args.dtype)
    if lm.tokenizer is None:
        raise UserError(f"{args.model}: has no tokenizer, so text prompts cannot be encoded")
    out = lm.generate(prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                      top_k=args.top_k, n=args.n, stop=stops or None, seed=args.seed, chat=args.chat)
    for i, (prompt, samples) in enumerate(zip(prompts, out)):
        for j, c in enumerate(samples):
            if args.json:
                print(json.dumps({"prompt": i, "sample": j, "text": c.text, "finish_reason": c.finish_reason,
                                  "token_ids": c.token_ids, "logprobs": [round(x, 5) for x in c.logprobs]}))
            else:
                print(f"=== prompt {i} sample {j} ({c.finish_reason}, {len(c.token_ids)} tokens) ===")
                print(c.text)
    return 0
