"""The ``rnnkit`` console script: one grammar of verbs; errors in one line, non-zero exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import rnnkit
from rnnkit.errors import RnnkitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description=(
            "Recurrent neural networks on text, exactly as the CS224N lecture writes them "
            "(Elman/sigmoid RNN, IRNN, GRU, LSTM; deep and bidirectional), and fast."
        ),
        epilog="Run 'rnnkit COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a short run on generated data: fast path = reference path, then small models training",
        description=(
            "Check that each cell's fast path computes the reference path's function (outputs and "
            "gradients), then train a small language model of each cell on a generated task that "
            "needs memory (repeat a random phrase), printing perplexity and speed. Needs no data files."
        ),
    )
    demo.add_argument("--steps", type=int, default=300, help="training steps per cell (default: 300)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            from rnnkit.cli.demo import run_demo

            return run_demo(steps=args.steps, seed=args.seed, device=args.device)
    except RnnkitError as err:
        print(f"rnnkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
