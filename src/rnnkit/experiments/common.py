"""What every experiment shares: the tiny scale, flags on table rows, strict JSON, the folder it writes."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.fileio import reason

TINY_STEPS = 20  # training steps per run at --scale tiny


def strict_json(value):
    """``value`` with every non-finite float replaced by None: JSON has no NaN or infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def clear_previous(out: Path, names: Iterable[str]) -> tuple[list[str], int]:
    """Remove the files called ``names`` from ``out`` (an earlier call's output), nothing else.

    Returns the names removed and how many other entries ``out`` holds (left as they are).

    Raises:
        RnnkitError: one of them cannot be removed (a read-only file system, no permission),
            naming it; nothing of this call is written then.
    """
    names = set(names)
    removed = []
    for name in sorted(names):
        path = out / name
        if path.is_file() or path.is_symlink():
            try:
                path.unlink()
            except OSError as err:
                raise RnnkitError(
                    f"{path}: cannot remove an earlier call's file ({reason(err)}); nothing was written"
                ) from None
            removed.append(name)
    others = sum(1 for p in out.iterdir() if p.name not in names) if out.is_dir() else 0
    return removed, others


def report_folder(out: Path, written: list[str], removed: list[str], others: int, what: str) -> None:
    """Print where a call wrote (and what of an earlier call it replaced), for a human."""
    if removed:
        print(f"removed an earlier call's {', '.join(removed)} from {out.resolve()}")
    left = f"; {others} other {'entry' if others == 1 else 'entries'} there left untouched" if others else ""
    print(f"{what}: {out.resolve()} ({', '.join(written)}{left})")


def flag(row: dict, text: str) -> None:
    """Add ``text`` to the row's ``flags``: a figure that is no evidence of what the table shows."""
    row.setdefault("flags", []).append(text)


def suffix(row: dict) -> str:
    """The row's flags as the end of its printed table line (``!`` then the flags), or nothing."""
    return ("  ! " + "; ".join(row["flags"])) if row.get("flags") else ""


def mse_flags(rows: list[dict], baseline: float) -> None:
    """Flag each row whose ``mse`` is not finite or no better than ``baseline``."""
    for row in rows:
        row.setdefault("flags", [])
        if not math.isfinite(row["mse"]):
            flag(row, "MSE not finite (diverged)")
        elif row["mse"] >= baseline:
            flag(row, f"no better than always predicting 1 (MSE {baseline:.3f})")


MAX_LENGTH = 2000
"""The longest adding-problem sequence ``--lengths`` takes: the test batch alone (1,000
sequences x T steps x 100 units of float32) is then at most 0.8 GB (T = 100,000 would be 40)."""


def check_choices(
    name: str, module: ModuleType, cells: Sequence[str] | None, lengths: Sequence[int] | None
) -> dict[str, Any]:
    """The ``cells`` and ``lengths`` given for experiment ``name`` (its ``module``), checked
    against what its ``experiment`` takes (keyword-only parameters of those names) and knows
    (its ``CELLS``); only those given, as tuples."""
    takes = inspect.signature(module.experiment).parameters
    choices: dict[str, Any] = {}
    if cells is not None:
        known = getattr(module, "CELLS", None)
        if "cells" not in takes or known is None:
            raise RnnkitError(f"--cells applies to the adding and long-range experiments, not {name}")
        unknown = [c for c in cells if c not in known]
        if unknown or not cells:
            raise RnnkitError(
                f"--cells: unknown cell {unknown[0] if unknown else '(none given)'!r} for {name}; "
                f"the cells are: {', '.join(known)}"
            )
        choices["cells"] = tuple(dict.fromkeys(cells))
    if lengths is not None:
        if "lengths" not in takes:
            raise RnnkitError(f"--lengths applies to the adding experiment, not {name}")
        if not lengths or any(not 2 <= T <= MAX_LENGTH for T in lengths):
            raise RnnkitError(f"--lengths: each length T must be in [2, {MAX_LENGTH}], got {list(lengths)}")
        choices["lengths"] = tuple(dict.fromkeys(lengths))
    return choices
