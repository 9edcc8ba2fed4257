"""Checks of command-line values that argparse's types cannot express: one-line errors
naming the option, what it got and what it takes (before any model is loaded)."""

from __future__ import annotations

import math

from rnnkit.errors import RnnkitError


def at_least(option: str, value: int | None, low: int) -> None:
    """``value`` (None: not given) is an integer of at least ``low``."""
    if value is not None and value < low:
        raise RnnkitError(f"{option} must be at least {low}, got {value}")


def at_most(option: str, value: int, high: int, why: str) -> None:
    """``value`` is at most ``high``; ``why`` says what the ceiling protects."""
    if value > high:
        raise RnnkitError(f"{option} must be at most {high} ({why}), got {value}")


def between(option: str, value: int, low: int, high: int, why: str) -> None:
    """``value`` is an integer in [``low``, ``high``]; ``why`` says what the ceiling protects."""
    if not low <= value <= high:
        raise RnnkitError(f"{option} must be in [{low}, {high}] ({why}), got {value}")


def positive_finite(option: str, value: float) -> None:
    """``value`` is a finite number above 0 (a temperature, a rate)."""
    if not (math.isfinite(value) and value > 0):
        raise RnnkitError(f"{option} must be a finite number above 0, got {value}")


def probability_mass(option: str, value: float | None) -> None:
    """``value`` (None: not given) is in (0, 1], as nucleus sampling's mass is."""
    if value is not None and not (0 < value <= 1):
        raise RnnkitError(f"{option} must be in (0, 1], got {value}")
