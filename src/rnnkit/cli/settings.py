"""``rnnkit presets`` and ``rnnkit config``: the shipped presets and every setting, from their sources.

The preset list is read from the presets' headers (:func:`rnnkit.presets.header`), the
settings from the config dataclasses' fields (:func:`rnnkit.config.describe`): nothing here
is written twice. No torch import: these answer at once.
"""

from __future__ import annotations

import argparse
import json
import math

from rnnkit import presets as preset_files
from rnnkit.config import describe, load_config

TRY = "rnnkit train --data DATA --out RUN --config NAME"


def add_presets_arguments(p: argparse.ArgumentParser) -> None:
    """``rnnkit presets [--json]``."""
    p.add_argument("--json", action="store_true", help="machine-readable output: a JSON list")


def presets(args: argparse.Namespace) -> int:
    """One line per preset: its name, what it is, the figure it reached and the time it took."""
    rows = [preset_files.header(name) for name in preset_files.names()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['what']}; {row['reached']}; {row['time']}")
    print(f"\nTrain one: {TRY}. Its settings: rnnkit config NAME. Each file's header has its command.")
    return 0


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``rnnkit config [PRESET] [--json]``."""
    p.add_argument(
        "preset",
        nargs="?",
        metavar="PRESET",
        help="a preset's name (rnnkit presets) or a TOML file: show its values (default: the defaults)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: name, value, default, type, choices, doc",
    )


def show_config(args: argparse.Namespace) -> int:
    """Every setting as ``section.field``, its value (the default or the preset's), type or
    allowed values, and a one-line doc; ``*`` marks a value the preset changed."""
    rows = describe(load_config(args.preset) if args.preset else None)
    if args.json:
        finite = [{**row, "value": _json(row["value"]), "default": _json(row["default"])} for row in rows]
        print(json.dumps({"preset": args.preset, "settings": finite}, indent=1, allow_nan=False))
        return 0
    cells = [
        (
            row["name"],
            _value(row["value"]) + ("*" if row["value"] != row["default"] else ""),
            "|".join(map(str, row["choices"]))
            if row["choices"]
            else row["type"] + (f", {row['range']}" if row.get("range") else ""),
            row["doc"],
        )
        for row in rows
    ]
    title = ("setting", "default" if args.preset is None else "value", "allowed", "what it does")
    widths = [max(len(c[i]) for c in [title, *cells]) for i in range(3)]
    for cell in [title, *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(cell, widths)) + "  " + cell[3])
    source = f"{args.preset} (* differs from the default)" if args.preset else "the defaults"
    print(
        f"\nValues: {source}. Set one with --section.field=value (e.g. --model.cell=gru) or in a TOML "
        'file ([model] cell = "gru") given to --config; the presets: rnnkit presets.'
    )
    return 0


def _value(value: object) -> str:
    """A value as an override would write it: none, true, 0.5, inf, 2000,5000."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    return str(value)


def _json(value: object) -> object:
    """``value`` as strict JSON has it: infinities as the strings ``"inf"`` and ``"-inf"``."""
    return _value(value) if isinstance(value, float) and not math.isfinite(value) else value
