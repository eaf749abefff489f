"""Training-step throughput: o1jax SFT and DPO steps against a plain PyTorch + transformers AdamW step on the same
model, batch and precision, plus MFU against this machine's measured matmul rate. Appends to bench/RESULTS.md.

  python bench/training.py                       # SmolLM2-135M-Instruct, seq 512, batch 8, float32, CPU
  python bench/training.py --model qwen2.5-coder-1.5b --random-init --dtype bfloat16 --no-torch --no-dpo  # GPU
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def matmul_rate(dtype, n: int = 2048, reps: int = 5) -> float:
    """Measured peak-ish FLOP/s of a square matmul on the default device."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    f(a, a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a, a)
    out.block_until_ready()
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_flops_per_token(cfg, T: int, trainable_fraction: float = 1.0) -> float:
    """6 N (matmul params, incl. the LM head) + attention 12 L T D_attn / 2 (causal) per token."""
    n = cfg.num_params() - cfg.vocab_size * cfg.hidden_size * (0 if cfg.tie_word_embeddings else 1)
    n += cfg.vocab_size * cfg.hidden_size  # the head matmul (the embedding lookup is free)
    attn = 12 * cfg.num_layers * T * cfg.num_heads * cfg.head_dim / 2
    return 6 * n + attn


def time_steps(fn, steps: int) -> float:
    fn()  # compile / warm up
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def bench_o1jax(kind, lm, B, T, dtype, steps, remat, micro=0):
    from o1jax.models.sharding import make_mesh
    from o1jax.training.config import TrainConfig
    from o1jax.training.mesh import put_batch
    from o1jax.training.state import build_trainer
    from o1jax.training.testing import synthetic_batch
    mesh = make_mesh(1, -1, 1)
    tc = TrainConfig()
    tc.train.batch_size, tc.train.compute_dtype, tc.train.remat = B, dtype, remat
    tc.train.micro_batch_size = micro
    tr = build_trainer(kind, tc, lm.cfg, lm.params, mesh)
    b = synthetic_batch(kind, B, T, vocab=lm.cfg.vocab_size)
    b["loss_mask"] = b["segment_ids"].astype(np.float32)
    b["segment_ids"] = np.ones_like(b["segment_ids"])
    b["positions"] = np.broadcast_to(np.arange(T, dtype=np.int32), b["inputs"].shape).copy()
    batch = put_batch(b, mesh)

    def step():
        jax.block_until_ready(tr.step(batch))
    dt = time_steps(step, steps)
    rows = B * (2 if kind == "dpo" else 1)
    return rows * T / dt, dt


def bench_torch(hf_dir_or_cfg, B, T, dtype, steps):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = hf_dir_or_cfg
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, model.config.vocab_size, (B, T))

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt = time_steps(step, steps)
    return B * T / dt, dt


def torch_model_from(lm):
    """The same weights in transformers (via o1jax's HF export)."""
    import tempfile
    from transformers import AutoModelForCausalLM
    d = tempfile.mkdtemp()
    lm.export_hf(d)
    return AutoModelForCausalLM.from_pretrained(d, torch_dtype="float32")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--no-remat", dest="remat", action="store_false",
                    help="keep every layer's activations (the shipped configs/train_*.toml set remat = true; on CPU "
                         "recomputing them is also faster: no [30, B, ...] residual buffers to fill and read)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-dpo", action="store_true")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    a = ap.parse_args()
    import o1jax
    lm = o1jax.load_model(a.model, random_init=a.random_init, dtype=a.dtype)
    cfg = lm.cfg
    dev = jax.devices()[0]
    peak = matmul_rate(jnp.bfloat16 if a.dtype == "bfloat16" else jnp.float32, n=4096 if dev.platform != "cpu" else 2048)
    fpt = train_flops_per_token(cfg, a.seq)
    lines = []
    sft_tps, sft_dt = bench_o1jax("sft", lm, a.batch, a.seq, a.dtype, a.steps, a.remat)
    lines.append(f"| o1jax SFT step | {sft_tps:,.0f} | {sft_dt:.2f} | {100 * sft_tps * fpt / peak:.1f}% |")
    print(lines[-1], f"(peak {peak / 1e9:.1f} GFLOP/s)", flush=True)
    if not a.no_dpo:
        # DPO: policy fwd+bwd on chosen+rejected, plus a reference forward (2 of the 6 N): 8/6 of SFT's work
        # micro-batches of B/2 pairs: the same rows per forward as the SFT step (memory of a 2B-row step w/o remat)
        dpo_tps, dpo_dt = bench_o1jax("dpo", lm, a.batch, a.seq, a.dtype, a.steps, a.remat, micro=max(a.batch // 2, 1))
        lines.append(f"| o1jax DPO step (pairs x2 rows, + ref fwd) | {dpo_tps:,.0f} | {dpo_dt:.2f} | "
                     f"{100 * dpo_tps * fpt * 8 / 6 / peak:.1f}% |")
    if not a.no_torch:
        if a.dtype != "float32":
            print("torch baseline runs in float32 only here; skipped")
        else:
            t_tps, t_dt = bench_torch(torch_model_from(lm), a.batch, a.seq, a.dtype, a.steps)
            lines.append(f"| torch + transformers AdamW step | {t_tps:,.0f} | {t_dt:.2f} | "
                         f"{100 * t_tps * fpt / peak:.1f}% |")
            lines.append(f"\nSFT speed-up over torch: {sft_tps / t_tps:.2f}x")
    cmd = "python " + " ".join(sys.argv)
    machine = f"{platform.node()} {dev.device_kind} ({dev.platform}, {jax.device_count()} device(s), " \
              f"{os.cpu_count()} CPUs)"
    report = (f"\n## training step throughput ({datetime.date.today()})\n\n`{cmd}`  \nmachine: {machine}; "
              f"model {a.model} ({cfg.num_params() / 1e6:.0f}M), seq {a.seq}, batch {a.batch}, {a.dtype}, "
              f"remat {'on' if a.remat else 'off'}; "
              f"measured matmul rate {peak / 1e9:.1f} GFLOP/s; {fpt / 1e9:.2f} GFLOP per trained token\n\n"
              "| step | tokens/s | s/step | MFU |\n|---|---|---|---|\n" + "\n".join(lines) + "\n")
    print(report)
    with open(a.results, "a") as f:
        f.write(report)


if __name__ == "__main__":
    main()
