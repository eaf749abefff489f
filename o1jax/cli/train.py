"""`o1jax train {sft,dpo,prm,ppo}`: train the TCG, the policy or the PRM (steps 1, 3, 4, 5 of the o1-Coder loop).
Re-running the same command with the same --out resumes from the newest good checkpoint."""
from __future__ import annotations

import argparse

KINDS = {
    "sft": ("supervised fine-tuning: token cross-entropy on the response",
            'JSONL lines {"prompt": str, "response": str}'),
    "dpo": ("direct preference optimisation against the frozen starting model",
            'JSONL lines {"prompt": str, "chosen": str, "rejected": str}'),
    "prm": ("process reward model: point-wise BCE, pair-wise Bradley-Terry, or generative +/- (prm.kind)",
            'point-wise/generative: {"prompt": str, "steps": [str], "values": [float in 0..1]}\n'
            '  pair-wise: {"prompt": str, "steps": [shared prefix], "chosen": str, "rejected": str}'),
    "ppo": ("PPO with rollouts, execution-service outcome rewards and optional process rewards",
            'JSONL lines {"prompt": str, "tests": <execution-service test spec>, "entry_point"?: str, '
            '"starter_code"?: str}\n'
            '  rewards: ppo.reward=dense|aggregate; PRM step scores: ppo.process_rewards=true ppo.prm_model=PRM_RUN'),
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model: sft, dpo, prm, ppo (resumable)",
                              description="Training steps of the o1-Coder loop. Runs unchanged on one CPU and on "
                                          "a TPU pod slice (mesh.* keys); resumes when --out holds a run.")
    sub = p.add_subparsers(dest="train_kind", metavar="KIND")
    for kind, (help_, fmt) in KINDS.items():
        k = sub.add_parser(
            kind, help=help_, formatter_class=argparse.RawDescriptionHelpFormatter, description=help_ + ".",
            epilog=f"data format:\n  {fmt}\n\n"
                   "overrides: section.key=value, e.g. train.steps=100 train.batch_size=8 train.seed=0 "
                   "checkpoint.every=50 optim.lr=1e-4 lora.enabled=true lora.rank=8 mesh.fsdp=-1\n"
                   f"paper settings: --config configs/train_{kind}.toml; every key: o1jax/training/README.md\n"
                   f"example:\n  o1jax train {kind} --model smollm2-135m-instruct --data {kind}.jsonl "
                   f"--out runs/{kind} train.steps=100")
        k.add_argument("--model", required=True, help="preset, HF dir, .gguf, o1jax checkpoint or training run dir")
        k.add_argument("--data", required=True, help="training data (JSONL)")
        k.add_argument("--out", required=True, help="run dir (checkpoints, metrics, exports); resumes if present")
        k.add_argument("--config", help="TOML config (sections train, optim, lora, dpo, prm, ppo, mesh, "
                                        "checkpoint, data, eval)")
        if kind == "ppo":
            k.add_argument("--workers", type=int, default=None,
                           help="execution-service workers (default: one per core)")
            k.add_argument("--allow-weaker-sandbox", action="store_true",
                           help="run even where a sandbox protection is unavailable on this host")
        k.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
        k.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args) -> int:
    from o1jax.config import resolve
    from o1jax.training.config import TrainConfig
    from o1jax.training.loop import start_execution_service, train
    tcfg = resolve(TrainConfig(), args.config, args.overrides)
    if args.train_kind != "ppo":
        return train(args.train_kind, args.model, args.data, args.out, tcfg)
    if tcfg.ppo.process_rewards:  # a bad PRM path fails now, not after the policy has loaded
        import os

        from o1jax.errors import UserError
        from o1jax.training.checkpointing import read_run_info
        info = read_run_info(tcfg.ppo.prm_model) if os.path.isdir(tcfg.ppo.prm_model or "-") else None
        if (info or {}).get("kind") != "prm":
            raise UserError(f"ppo.prm_model={tcfg.ppo.prm_model!r}: not a PRM run dir (the --out of "
                            "`o1jax train prm`); needed by ppo.process_rewards=true")
    # The execution service starts before JAX initialises a backend: the process that forks sandboxes stays small.
    with start_execution_service(args.workers, args.allow_weaker_sandbox) as service:
        return train("ppo", args.model, args.data, args.out, tcfg, service=service)
