"""Sampling throughput: o1jax's Sampler against transformers' generate on the same model, prompts and settings.

    python bench/sampling.py                                  # SmolLM2-135M-Instruct (GGUF), CPU, batch 1 16 64
    python bench/sampling.py --model qwen2.5-coder-1.5b --random-init --dtype bfloat16 --batches 1 16 64 256
                                                              # GPU: random-weight Qwen2.5-Coder-1.5B shape

Both sides sample exactly --new-tokens tokens per row (o1jax ignore_eos, transformers min_new_tokens), from
--prompt-tokens-long prompts. Compile time (o1jax's first call minus a warm call) is reported apart and excluded
from tokens/s. The machine's limit comes from a measured matmul rate (FLOP bound) and a measured copy bandwidth
(memory bound: weights once per step plus each row's KV cache); the row appended to bench/RESULTS.md says which.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing


def machine_limits(dtype) -> tuple[float, float]:
    """(matmul FLOP/s in `dtype`, memory bandwidth in bytes/s counting read + write), both measured with JAX."""
    n = 4096 if jax.default_backend() != "cpu" else 2048
    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        r = mm(a)
    r.block_until_ready()
    flops = 10 * 2 * n ** 3 / (time.perf_counter() - t)
    x = jnp.ones((256 << 20) // 4, jnp.float32)
    cp = jax.jit(lambda x: x + 1.0)
    cp(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        y = cp(x)
    y.block_until_ready()
    bw = 10 * 2 * x.nbytes / (time.perf_counter() - t)
    if jax.default_backend() == "cpu":  # XLA's CPU elementwise loops are not the machine's bandwidth; numpy's is
        xs, ys = np.ones(x.size, np.float32), np.empty(x.size, np.float32)
        np.copyto(ys, xs)
        t = time.perf_counter()
        for _ in range(10):
            np.copyto(ys, xs)
        bw = max(bw, 10 * 2 * xs.nbytes / (time.perf_counter() - t))
        try:
            import torch
            xt = torch.ones(x.size)
            yt = torch.empty_like(xt)
            yt.copy_(xt)
            t = time.perf_counter()
            for _ in range(10):
                yt.copy_(xt)
            bw = max(bw, 10 * 2 * xt.numel() * 4 / (time.perf_counter() - t))
        except ImportError:
            pass
    return flops, bw


def bounds(cfg, batch, prompt_len, new_tokens, flops, bw):
    """Roofline tokens/s for decoding: (FLOP-bound, memory-bound) at the mean context length."""
    ctx = prompt_len + new_tokens / 2
    params = cfg.num_params()
    attn_flops = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * ctx
    tok_flops = 2 * params + attn_flops
    pbytes = params * jnp.dtype(cfg.param_dtype).itemsize
    kv_bytes = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * ctx * jnp.dtype(cfg.dtype).itemsize
    flop_bound = flops / tok_flops
    mem_bound = batch * (bw / 2) / (pbytes + batch * kv_bytes)  # bw counts read + write; decoding mostly reads
    return flop_bound, mem_bound


def make_prompts(lm, batch, prompt_tokens, rng):
    base = ("You are given a list of integers. Write a Python function that returns the length of the longest "
            "strictly increasing subsequence, explain the dynamic programming recurrence step by step, analyse its "
            "time and memory complexity, and then show how patience sorting improves it to n log n. ")
    if lm.tokenizer is not None:
        ids = lm.tokenizer.encode(base * 8)
        return [ids[i:i + prompt_tokens] for i in range(batch)]
    return [list(rng.integers(10, lm.cfg.vocab_size - 10, prompt_tokens)) for _ in range(batch)]


def time_o1jax(lm, prompts, args):
    kw = dict(max_new_tokens=args.new_tokens, temperature=args.temperature, top_p=args.top_p, seed=0,
              ignore_eos=True)
    t = time.perf_counter()
    out = lm.generate(prompts, **kw)
    first = time.perf_counter() - t
    times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        out = lm.generate(prompts, **{**kw, "seed": r + 1})
        times.append(time.perf_counter() - t)
    n_tok = sum(len(o[0].token_ids) for o in out)
    best = min(times)
    return n_tok / best, max(0.0, first - best), best


def hf_model(args, lm):
    import torch
    from transformers import AutoModelForCausalLM
    if args.random_init:
        from transformers import LlamaConfig, Qwen2Config
        c = lm.cfg
        kind = Qwen2Config if c.model_type == "qwen2" else LlamaConfig
        hc = kind(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                  num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                  num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim, rms_norm_eps=c.rms_norm_eps,
                  rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
                  tie_word_embeddings=c.tie_word_embeddings)
        tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
        return AutoModelForCausalLM.from_config(hc, dtype=tdt)
    from o1jax.assets import smollm2_gguf
    path = smollm2_gguf() if args.model == "smollm2-135m-instruct" else args.model
    return AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                dtype=torch.float32)


def time_transformers(model, prompts, args):
    import torch
    torch.set_num_threads(os.cpu_count())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(dev).eval()
    ids = torch.tensor(prompts, device=dev)
    kw = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=0,
              max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0)
    times = []
    with torch.inference_mode():
        model.generate(ids[:, :8], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
        for r in range(max(1, args.hf_repeats)):
            torch.manual_seed(r)
            t = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
            if dev == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    n_tok = (out.shape[1] - ids.shape[1]) * ids.shape[0]
    return n_tok / min(times)


def run_hf_worker(argv, batch) -> dict[int, float]:
    """transformers runs in its own process (no JAX runtime beside it), one batch size at a time, interleaved with
    o1jax's run of the same batch so that both see the same machine load."""
    import json
    import subprocess
    cmd = [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv), "--hf-worker",
           "--batches", str(batch)]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit("transformers baseline failed")
    return {int(k): v for k, v in json.loads(lines[-1]).items()}


def hf_worker(args):
    import json

    import o1jax
    if args.random_init:  # only the config is needed: no JAX weights in this process
        import types
        lm = types.SimpleNamespace(cfg=o1jax.PRESETS[args.model][0], tokenizer=None)
    else:  # only the tokenizer: a JAX runtime in this process slows torch down (their thread pools contend)
        import types

        from o1jax.assets import smollm2_gguf
        from o1jax.models import gguf_io
        from o1jax.models.tokenizer import Tokenizer
        path = smollm2_gguf() if args.model == "smollm2-135m-instruct" else args.model
        lm = types.SimpleNamespace(cfg=None, tokenizer=Tokenizer(gguf_io.load_gguf_tokenizer(path)))
    prompts = {b: make_prompts(lm, b, args.prompt_tokens, np.random.default_rng(b)) for b in args.batches}
    hf = hf_model(args, lm)
    del lm
    out = {}
    for b in args.batches:
        out[b] = time_transformers(hf, prompts[b], args)
        print(f"transformers batch {b}: {out[b]:.1f} tok/s", file=sys.stderr, flush=True)
    print(json.dumps(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--random-init", action="store_true", help="random weights of the preset's shape (GPU runs)")
    p.add_argument("--dtype", default="float32", help="compute and param dtype (float32 on CPU; bfloat16 on GPU)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--prompt-tokens", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--repeats", type=int, default=2, help="timed o1jax calls per batch (best is kept)")
    p.add_argument("--hf-repeats", type=int, default=1)
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"), help="append the table here ('' = no)")
    p.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.hf_worker:
        return hf_worker(args)

    import o1jax
    try:
        import torch  # noqa: F401
    except ImportError:
        args.no_transformers = True
    lm = o1jax.load_model(args.model, random_init=args.random_init, dtype=args.dtype, param_dtype=args.dtype)
    flops, bw = machine_limits(jnp.dtype(args.dtype))
    rows = []
    for b in args.batches:
        hf_all = {} if args.no_transformers else run_hf_worker(argv, b)
        prompts = make_prompts(lm, b, args.prompt_tokens, np.random.default_rng(b))
        tps, compile_s, wall = time_o1jax(lm, prompts, args)
        hf_tps = hf_all.get(b, float("nan"))
        fb, mb = bounds(lm.cfg, b, args.prompt_tokens, args.new_tokens, flops, bw)
        row = (b, tps, hf_tps, tps / hf_tps, compile_s, fb, mb, tps / min(fb, mb))
        rows.append(row)
        print("batch %d: o1jax %.1f tok/s, transformers %.1f tok/s, ratio %.2f, compile %.1f s, bounds flop %.0f "
              "mem %.0f tok/s, fraction of limit %.2f" % row, flush=True)
    dev = jax.devices()[0]
    head = (f"\n## sampling — {datetime.date.today()} — {dev.device_kind} ({jax.default_backend()}, "
            f"{os.cpu_count()} CPU cores, {platform.machine()})\n\n"
            f"`{' '.join(shlex.quote(a) for a in ['python', 'bench/sampling.py'] + sys.argv[1:])}`\n\n"
            f"{lm!r}; prompts {args.prompt_tokens} tokens, {args.new_tokens} new tokens, temperature "
            f"{args.temperature}, top-p {args.top_p}. Measured matmul {flops / 1e9:.0f} GFLOP/s ({args.dtype}), "
            f"copy bandwidth {bw / 1e9:.1f} GB/s (read + write).\n\n"
            "| batch | o1jax tok/s | transformers tok/s | ratio | o1jax compile s | FLOP-bound tok/s | "
            "memory-bound tok/s | o1jax / min(bound) |\n|---|---|---|---|---|---|---|---|\n")
    table = "".join("| %d | %.1f | %.1f | %.2f | %.1f | %.0f | %.0f | %.2f |\n" % r for r in rows)
    print(head + table)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(head + table)


if __name__ == "__main__":
    main()
