"""``rnnkit explore``: an interactive page to see inside trained recurrent networks.

:mod:`rnnkit.explore.compute` answers every question of the page on the CLI's own
inference and diagnostic code, :mod:`rnnkit.explore.app` serves it over HTTP/JSON with the
page (package data in ``static/``), and :func:`snapshot` writes the same answers for a few
texts into one JSON object that :func:`static_page` puts in one HTML file with the page, read
with no server (``rnnkit demo``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnkit.explore.compute import Explorer
    from rnnkit.explore.worker import ProbeProcess

__all__ = ["analyze", "make_app", "snapshot", "static_page"]


def analyze(run: Any, text: str, k: int = 5) -> dict[str, Any]:
    """What the page shows first for ``text`` on the run directory ``run`` (see ``POST /api/analyze``)."""
    from rnnkit.explore.compute import Explorer

    return Explorer([run]).analyze(0, text, k)


def make_app(explorer: Explorer, probes: ProbeProcess | None = None) -> Any:
    """The Starlette app serving ``explorer``'s runs (see :mod:`rnnkit.explore.app`), the probe's
    questions asked of ``probes`` if given (:mod:`rnnkit.explore.worker`)."""
    from rnnkit.explore.app import build_app

    return build_app(explorer, probes)


def snapshot(
    runs: list[Any], texts: list[str], k: int = 5, spans: list[list[tuple[int, int]]] | None = None
) -> dict[str, Any]:
    """Every answer the page needs for ``texts`` on ``runs`` (run directories), as one JSON-able
    object, units for ``spans`` of each text (see :func:`rnnkit.explore.page.snapshot`)."""
    from rnnkit.explore import page
    from rnnkit.explore.compute import Explorer

    return page.snapshot(Explorer(runs), texts, k, spans)


def static_page(shot: dict[str, Any], preface: str = "") -> str:
    """One HTML file showing the snapshot ``shot`` from the file system (see
    :func:`rnnkit.explore.page.static_page`)."""
    from rnnkit.explore import page

    return page.static_page(shot, preface)
