"""``--adapt`` for evaluate and score, and the ``tune-adapt`` verb (light: no torch at import)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

METHODS = ("dynamic", "cache", "dynamic,cache")
"""What ``--adapt`` takes (:data:`rnnkit.adapt.METHODS`, repeated here to keep the parser light)."""

METAVAR = "{" + " | ".join(METHODS) + "}"
"""How ``--help`` names the choices: argparse's own ``{a,b,c}`` would blur ``dynamic,cache``."""

OPTIONS = (
    ("--adapt-lr", "lr", float, "dynamic", "step size η (default: the run's tuned one, else 5e-05)"),
    ("--adapt-decay", "decay", float, "dynamic", "decay λ toward the trained weights (else 0.002)"),
    ("--segment", "segment", int, "dynamic", "tokens scored between two updates (else 5)"),
    ("--adapt-eps", "eps", float, "dynamic", "ε added to the RMS gradient (else 2e-05)"),
    (
        "--stats-tokens",
        "stats_tokens",
        int,
        "dynamic",
        "training tokens the RMS gradient statistics are collected on (else 100000)",
    ),
    ("--cache-window", "window", int, "cache", "(hidden state, next token) pairs held (else 500)"),
    ("--cache-theta", "theta", float, "cache", "θ, sharpness of the match (else 1.0)"),
    ("--cache-lambda", "cache_lambda", float, "cache", "λ, the cache's share of the mixture (else 0.1)"),
)
"""(option, setting, type, method, help) of every adaptation setting."""


METAVARS = {
    "lr": "ETA",
    "decay": "LAMBDA",
    "segment": "N",
    "eps": "EPS",
    "stats_tokens": "N",
    "window": "N",
    "theta": "THETA",
    "cache_lambda": "LAMBDA",
}


def add_adapt_options(parser: argparse.ArgumentParser, streamed: bool) -> None:
    """``--adapt`` and its settings; ``streamed``: score's wording (lines stop being independent)."""
    group = parser.add_argument_group(
        "adaptation",
        "Dynamic evaluation (Krause et al. 2018) and the neural cache (Grave et al. 2017): the text is "
        "read as one stream and every token is scored before the model adapts on it; the run's "
        "checkpoint is never changed. Settings not given are the run's tuned ones (rnnkit tune-adapt), "
        "else the papers'.",
    )
    what = (
        "score the lines in order as one stream that the model adapts to: a line's figures then depend "
        "on the lines before it (they are no longer independent)"
        if streamed
        else "evaluate the split as one stream that the model adapts to as it reads it"
    )
    group.add_argument("--adapt", choices=METHODS, default=None, metavar=METAVAR, help=what)
    for option, dest, kind, method, text in OPTIONS:
        group.add_argument(
            option,
            dest=f"adapt_{dest}",
            type=kind,
            default=None,
            metavar=METAVARS[dest],
            help=f"{method}: {text}",
        )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The adaptation settings given on the command line; one that does not apply to
    ``--adapt``'s methods (or given without ``--adapt``) is a one-line error."""
    from rnnkit.errors import RnnkitError

    given: dict[str, Any] = {}
    for option, dest, _, method, _ in OPTIONS:
        value = getattr(args, f"adapt_{dest}", None)
        if value is None:
            continue
        if args.adapt is None or method not in args.adapt.split(","):
            raise RnnkitError(f"{option} is a {method} setting; it needs --adapt {method} (or dynamic,cache)")
        given[dest] = value
    return given


def tune_parser(verbs: argparse._SubParsersAction) -> None:
    tune = verbs.add_parser(
        "tune-adapt",
        help="search dynamic evaluation's and the neural cache's settings on the validation split",
        description=(
            "Search the adaptation settings of a language model run on its validation split only (a "
            "coordinate search from the papers' settings: η then λ for dynamic evaluation; θ, λ and the "
            "window for the cache), each trial on the split's first --budget-tokens tokens, trials "
            "stopped after --budget-minutes. The chosen settings and the search's cost (tokens, seconds, "
            "every trial) go to RUN/adapt.json, written atomically; 'rnnkit evaluate RUN --adapt ...' "
            "then uses them. The test split is never read."
        ),
    )
    tune.add_argument("run", help="run directory of a language model")
    tune.add_argument(
        "--adapt",
        choices=METHODS,
        default="dynamic,cache",
        metavar=METAVAR,
        help="what to tune (default: both)",
    )
    tune.add_argument(
        "--budget-tokens",
        type=int,
        default=20_000,
        help="validation tokens read per trial (default: 20000; the whole split if it is shorter)",
    )
    tune.add_argument(
        "--budget-minutes",
        type=float,
        default=10.0,
        help="no new trial starts after this many minutes (default: 10); the best so far is kept",
    )
    tune.add_argument(
        "--segment",
        type=int,
        default=None,
        metavar="N",
        help="dynamic: tokens scored between two updates, kept through the search (default: 5, the "
        "paper's; longer segments adapt less often and read faster)",
    )
    tune.add_argument(
        "--stats-tokens",
        type=int,
        default=None,
        metavar="N",
        help="dynamic: training tokens the RMS gradient statistics are collected on (default: 100000)",
    )
    tune.add_argument(
        "--data", help="corpus directory, file or name (default: the corpus the run was trained on)"
    )
    tune.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.add_argument("--json", action="store_true", help="what adapt.json holds, as one JSON line")


def tune_adapt(args: argparse.Namespace) -> int:
    """``rnnkit tune-adapt``: the search, its trials on standard error, the choice on standard output."""
    from rnnkit.errors import RnnkitError

    if not 100 <= args.budget_tokens <= 10**9:
        raise RnnkitError(
            f"--budget-tokens must be an integer in [100, 1000000000], got {args.budget_tokens}"
        )
    if not (args.budget_minutes > 0 and args.budget_minutes < 1e7):  # also refuses nan
        raise RnnkitError(f"--budget-minutes must be a number in (0, 10000000), got {args.budget_minutes}")
    from rnnkit.cli.commands import _language_model

    args.quantize = None
    trained = _language_model(args)
    record = trained.tune_adapt(
        args.adapt,
        args.budget_tokens,
        args.budget_minutes,
        args.data,
        progress=not args.no_progress,
        log=lambda line: print(f"rnnkit tune-adapt: {line}", file=sys.stderr),
        segment=args.segment,
        stats_tokens=args.stats_tokens,
    )
    if args.json:
        print(json.dumps(record))
        return 0
    search = record["search"]
    for method in ("dynamic", "cache"):
        if method in record:
            tried = [t["valid_ppl"] for t in search["history"] if t["methods"] == method and t["valid_ppl"]]
            best = f"; best valid ppl {min(tried):.2f}" if tried else ""
            print(f"{method}: " + ", ".join(f"{k} {v}" for k, v in record[method].items()) + best)
    print(
        f"searched on valid: {search['trials']} trials of {search['tokens_per_trial']} tokens "
        f"({search['tokens']} tokens, {search['stats_tokens']} training tokens for gradient statistics) in "
        f"{search['seconds']:.1f} s; no adaptation: valid ppl {search['baseline_valid_ppl']:.2f}; written to "
        f"{args.run}/adapt.json"
    )
    return 0
