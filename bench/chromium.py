"""Debian's chromium as the explorer's benchmark and browser tests launch it (one place for its flags).

Playwright's own browser download is not reachable from these machines: both drive the
``chromium`` package (``apt install chromium``) through Playwright's ``executable_path``.
``bench/explore.py`` imports this module; ``tests/explore/test_browser_20.py`` loads it from
this file (the tests import nothing else from ``bench/``, and the benchmark nothing from ``tests/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
"""Where Debian's package installs the browser."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # as root in a container, chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # no request leaves the machine: the tests check it
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
"""Headless, offline, no first-run work: the page's own requests are the only ones."""


def launch(playwright: Any, executable: str | Path = CHROMIUM) -> Any:
    """Chromium at ``executable``, headless and offline, through a started Playwright."""
    return playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
