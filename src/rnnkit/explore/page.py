"""The explorer with no server: a snapshot of its answers for a few texts, and one HTML file that shows it.

:func:`snapshot` asks an :class:`~rnnkit.explore.compute.Explorer` everything the page asks
for each text (numbers rounded for display: the page draws them, it does not compute with
them), and :func:`static_page` writes the page with its script, its style and the snapshot
inside one file, which a browser opens from the file system (``rnnkit demo`` writes one).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.experiments.common import strict_json
from rnnkit.explore.compute import Explorer
from rnnkit.explore.runs import QUANTITIES

STATIC = Path(__file__).parent / "static"
DATA_MARKER = '<script id="rnnkit-data" type="application/json">null</script>'
STYLE_MARKER = '<link rel="stylesheet" href="static/explore.css">'
SCRIPT_MARKER = '<script src="static/explore.js"></script>'

SPANS = 8
"""Units are recorded for this many single-step spans of a text by default, spread over it."""

DIGITS = 4
"""Significant digits of the snapshot's numbers."""


def default_spans(steps: int) -> list[tuple[int, int]]:
    """Up to :data:`SPANS` single steps spread evenly over ``steps`` (every step of a short text)."""
    n = min(steps, SPANS)
    if n <= 1:
        return [(0, 1)] if steps else []
    return [(t, t + 1) for t in sorted({round(i * (steps - 1) / (n - 1)) for i in range(n)})]


def snapshot(
    explorer: Explorer,
    texts: list[str],
    k: int = 5,
    spans: list[list[tuple[int, int]]] | None = None,
    digits: int | None = DIGITS,
) -> dict[str, Any]:
    """Every answer the page needs for ``texts`` on the explorer's runs, as one JSON-able object
    (non-finite numbers as None; floats to ``digits`` significant digits, all of them with
    None): ``runs``, ``texts``, ``results`` by ``"<run>|<text index>"`` (``analyze``; ``inside``
    by ``"<layer>/<direction>/<quantity>"``; ``gradient`` by ``"<layer>/<direction>"``;
    ``units`` by ``"<layer>/<direction>/<quantity>/<start>-<end>"``, of the top layer's first
    direction, every quantity, for the text's ``spans`` (by default :func:`default_spans`); or
    ``error``, the line a live server would answer) and ``training`` by run."""
    results: dict[str, Any] = {}
    for run in explorer.runs:
        m = run.config.model
        D = 2 if m.bidirectional else 1
        quantities = QUANTITIES.get(m.cell, ["h"])
        for n, text in enumerate(texts):
            try:
                entry: dict[str, Any] = {
                    "analyze": explorer.analyze(run.id, text, k),
                    "inside": {},
                    "gradient": {},
                }
                for layer in range(m.num_layers):
                    for direction in range(D):
                        for q in quantities:
                            entry["inside"][f"{layer}/{direction}/{q}"] = explorer.inside(
                                run.id, text, layer, direction, q
                            )
                        entry["gradient"][f"{layer}/{direction}"] = explorer.gradient(
                            run.id, text, layer, direction
                        )
                top, steps = m.num_layers - 1, len(entry["analyze"]["tokens"])
                chosen = default_spans(steps) if spans is None else spans[n]
                entry["units"] = {
                    f"{top}/0/{q}/{a}-{b}": explorer.units(run.id, text, top, 0, q, a, b)
                    for q in quantities
                    for a, b in chosen
                }
            except RnnkitError as err:
                entry = {"error": str(err)}
            results[f"{run.id}|{n}"] = entry
    whole = {
        **explorer.describe(),
        "texts": list(texts),
        "results": results,
        "training": {str(run.id): explorer.training(run.id) for run in explorer.runs},
    }
    return strict_json(whole) if digits is None else rounded(whole, digits)


def rounded(value: Any, digits: int) -> Any:
    """``value`` with every float to ``digits`` significant digits, and None where not finite."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def static_page(shot: dict[str, Any], preface: str = "") -> str:
    """The explorer's page as one HTML file showing ``shot`` (a :func:`snapshot`) with no server:
    its style, script and data inside; ``preface`` (HTML) before the explorer's sections."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    for marker in (DATA_MARKER, STYLE_MARKER, SCRIPT_MARKER, "<main>"):
        if page.count(marker) != 1:
            raise RnnkitError(
                f"{STATIC / 'index.html'}: expected {marker!r} once; the installed page is not rnnkit's"
            )
    # nothing inside may close its element early: "</style", "</script" escaped, "<" in the data
    style = (STATIC / "explore.css").read_text(encoding="utf-8").replace("</style", "<\\/style")
    script = (STATIC / "explore.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    data = json.dumps(shot, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")
    page = page.replace("<main>", f"<main>\n{preface}" if preface else "<main>")
    page = page.replace(STYLE_MARKER, f"<style>\n{style}</style>")
    page = page.replace(SCRIPT_MARKER, f"<script>\n{script}</script>")
    return page.replace(DATA_MARKER, DATA_MARKER.replace(">null<", f">{data}<"))
