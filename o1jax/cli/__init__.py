"""The `o1jax` command: the only place that parses arguments. One module per subcommand, each with
`add_parser(subparsers)` registering its parser and `set_defaults(func=run)`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from o1jax.errors import UserError

# Subcommand modules, in the order of the o1-Coder loop. A module that is missing is skipped (partial installs).
SUBCOMMANDS = ["convert", "export_hf", "sample", "execute", "data", "eval", "train"]
COMPILING = {"convert", "export-hf", "sample", "eval", "train"}  # these use JAX's persistent compilation cache


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="o1jax",
        description="o1-Coder in JAX: test-case generation, MCTS over pseudocode, PRM and RL for code models.",
        epilog="Run `o1jax SUBCOMMAND --help` for each subcommand's options.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging (compilations, cache hits)")
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"o1jax.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"o1jax.cli.{name}":
                continue
            raise
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in COMPILING:
        from o1jax import compilation_cache
        compilation_cache.enable()
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
