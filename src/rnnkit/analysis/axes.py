"""Axis limits, ticks and titles for the diagnostics' plots: pure helpers, testable without drawing.

A sigmoid Elman network's gradient 50 steps back is ~1e-30 of the one at distance 0,
while one that vanished altogether is exactly 0 or underflows to a denormal: a log
axis shows at most :data:`LOG_RANGE` below its largest value and never reaches below
:data:`FLOOR`, and zeros and non-finite values are left out (not drawn as if they were
data).
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np

LOG_RANGE = 1e100
"""The most a log axis spans below its largest value (100 decades: a sigmoid Elman network's
gradient 100 steps back is ~1e-60 of the nearest one; below, denormals and round-off)."""
FLOOR = 1e-300
"""No log axis reaches below this (float64's normal numbers end at 2.2e-308)."""
MAX_TICKS = 25
"""At most this many word labels on a word axis (every k-th word beyond)."""


def drawable(values: Iterable[float], log: bool) -> np.ndarray:
    """``values`` as floats with what cannot be drawn as NaN: non-finite ones, and on a
    log axis zeros, negatives and denormals (below 2.2e-308, underflow rather than
    measurement); matplotlib leaves a gap there."""
    y = np.asarray(list(values), dtype=float)
    bad = ~np.isfinite(y) | ((y < sys.float_info.min) if log else False)
    return np.where(bad, np.nan, y)


def log_limits(*series: Iterable[float]) -> tuple[float, float] | None:
    """(bottom, top) of a log axis showing ``series``: from the smallest positive finite
    value (but no lower than the largest / :data:`LOG_RANGE`, nor :data:`FLOOR`) to the
    largest, a little padded; None when there is nothing positive to show."""
    values = np.concatenate([drawable(s, log=True) for s in series] or [np.array([])])
    shown = values[np.isfinite(values)]
    if shown.size == 0:
        return None
    hi = float(shown.max())
    lo = max(float(shown.min()), hi / LOG_RANGE)
    return max(lo / 2, FLOOR), hi * 2


def color_limits(log_values: np.ndarray) -> tuple[float, float] | None:
    """(vmin, vmax) of a log10 colour scale: at most log10(:data:`LOG_RANGE`) below the top."""
    shown = log_values[np.isfinite(log_values)]
    if shown.size == 0:
        return None
    hi = float(shown.max())
    lo = max(float(shown.min()), hi - math.log10(LOG_RANGE), math.log10(FLOOR))
    return (lo, hi) if lo < hi else (lo - 0.5, hi + 0.5)


def log_tick_style(bottom: float, top: float) -> str:
    """How to tick a log axis from ``bottom`` to ``top``: ``decades`` (10^k labels only)
    when it spans two decades or more, ``1-2-5`` over one to two, ``1-9`` below one."""
    ratio = top / bottom
    return "decades" if ratio >= 100 else ("1-2-5" if ratio >= 10 else "1-9")


def plain_number(value: float) -> str:
    """A tick label for a log axis read as numbers: 0.55, 2, 300, 1000, 1.5e-05 (never 5.5×10^-1)."""
    return f"{value:g}"


def token_ticks(tokens: Sequence[str], most: int = MAX_TICKS) -> tuple[list[int], list[str]]:
    """(positions, labels) for an axis of steps that are ``tokens``: every token when they
    are at most ``most``, else every k-th (a readable subset); labels shortened to 12
    characters, whitespace made visible (``\\n``, ``␣``)."""
    stride = max(1, math.ceil(len(tokens) / most))
    positions = list(range(0, len(tokens), stride))
    return positions, [_label(tokens[p]) for p in positions]


def _label(token: str) -> str:
    shown = token.replace("\n", "\\n").replace("\t", "\\t")
    if shown.strip() == "":
        shown = shown.replace(" ", "␣") or "∅"
    return shown if len(shown) <= 12 else shown[:11] + "…"


def wrap_title(title: str, width_inches: float, fontsize: float = 12.0) -> str:
    """``title`` broken into lines that fit a figure ``width_inches`` wide (never clipped)."""
    per_line = max(20, int(width_inches * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(title, per_line, break_long_words=False)) or title
