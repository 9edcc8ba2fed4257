"""The run presets shipped with rnnkit (package data): ``--config NAME`` finds them by name.

Each preset is a TOML file headed by four comment lines, read by :func:`header` (and so by
``rnnkit presets``) and checked by the tests::

    # rnnkit train --data ptb --out runs/NAME --config NAME
    # what: one line on the model and the corpus
    # reached: the figure it reached here (or "not verified ...")
    # time: how long that took, and on what

then a ``#`` line, free prose, and the settings. A preset tuned on one corpus says so in
a prose line ``# calibrated on: CORPUS, N words, M training tokens`` (:func:`calibration`):
``rnnkit train`` warns when the corpus it is given is far from that.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING

from rnnkit.errors import RnnkitError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

FIELDS = ("what", "reached", "time")

_CALIBRATED = re.compile(r"^# calibrated on: (.+), (\d+) words, (\d+) training tokens$", re.MULTILINE)
"""The header's labelled lines, in their order, after the command line."""


def folder() -> Traversable:
    """Where the preset files are (inside the installed package)."""
    return resources.files(__name__)


def names() -> list[str]:
    """Every preset's name (its file name without ``.toml``), sorted."""
    return sorted(p.name.removesuffix(".toml") for p in folder().iterdir() if p.name.endswith(".toml"))


def is_name(spec: str) -> bool:
    """Whether ``spec`` is written as a preset's name: no ``.toml``, no folder."""
    return bool(spec) and not spec.endswith(".toml") and "/" not in spec and "\\" not in spec


def read(name: str) -> str:
    """The text of preset ``name``; an unknown name is a one-line error listing the presets."""
    file = folder() / f"{name}.toml"
    if not is_name(name) or not file.is_file():
        raise RnnkitError(f"{name!r}: no such preset; the presets are {', '.join(names())} (rnnkit presets)")
    return file.read_text(encoding="utf-8")


def header(name: str) -> dict[str, str]:
    """Preset ``name``'s header: ``name``, ``command``, ``what``, ``reached`` and ``time``."""
    lines = read(name).splitlines()
    info = {"name": name, "command": lines[0].removeprefix("#").strip() if lines else ""}
    for line, key in zip(lines[1:], FIELDS):
        label, sep, text = line.removeprefix("#").strip().partition(":")
        if sep and label == key:
            info[key] = text.strip()
    missing = [key for key in ("command", *FIELDS) if not info.get(key)]
    if missing or not info["command"].startswith("rnnkit train "):
        raise RnnkitError(
            f"preset {name}: its header lacks {', '.join(missing) or 'the command'}; expected "
            "'# rnnkit train ...', then '# what: ...', '# reached: ...', '# time: ...'"
        )
    return info


def calibration(name: str) -> tuple[str, int, int] | None:
    """(corpus, vocabulary size, training tokens) preset ``name`` was calibrated on, or None
    when its prose names none (or ``name`` is a file, not a preset)."""
    if not is_name(name) or not (folder() / f"{name}.toml").is_file():
        return None
    found = _CALIBRATED.search(read(name))
    return None if found is None else (found[1], int(found[2]), int(found[3]))
