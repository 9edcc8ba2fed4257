"""Adaptation settings: the papers' defaults, their ranges, and the run's tuned ones (``adapt.json``)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json

METHODS = ("dynamic", "cache", "dynamic,cache")
"""What ``--adapt`` takes: dynamic evaluation, the neural cache, or both."""

ADAPT_FILE = "adapt.json"
"""The file of a run directory where :func:`tune` stores the chosen settings."""


# -- settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicSettings:
    """Dynamic evaluation's settings; the defaults are Krause et al.'s for AWD-LSTM on PTB
    (their released code, written for the paper's equations).

    Attributes:
        lr: the step size η (0: the weights never move: plain evaluation).
        decay: λ, the pull back toward the trained weights (scaled per weight, §5).
        segment: n, tokens scored between two updates (5 for word-level PTB).
        eps: ε, added to the RMS gradient before dividing by it.
        stats_tokens: training tokens the gradient statistics MS are collected on: the
            first this many of the training split (the paper reads all of it; 100k, a
            ninth of PTB's, keeps the statistics under a minute on a CPU core).
        stats_batch: columns of the training stream per gradient for MS (100, as the paper).
    """

    lr: float = 5e-5
    decay: float = 0.002
    segment: int = 5
    eps: float = 2e-5
    stats_tokens: int = 100_000
    stats_batch: int = 100

    def check(self) -> None:
        """One-line errors naming the option and its range."""
        _in_range("--adapt-lr", self.lr, 0.0, 1.0)
        _in_range("--adapt-decay", self.decay, 0.0, 1.0)
        _int_range("--segment", self.segment, 1, 10_000)
        _in_range("--adapt-eps", self.eps, 1e-12, 1.0)
        _int_range("--stats-tokens", self.stats_tokens, 2, 10**9)
        _int_range("--stats-batch", self.stats_batch, 1, 10_000)


@dataclass(frozen=True)
class CacheSettings:
    """The neural cache's settings; the defaults are Merity et al.'s for PTB (AWD-LSTM's
    ``pointer.py``: window 500, θ 1.0, λ 0.1).

    Attributes:
        window: how many recent (hidden state, next token) pairs the cache holds.
        theta: θ, the sharpness of the match exp(θ h_t · h_i).
        lam: λ, the cache's share of the mixture (0: the model alone).
    """

    window: int = 500
    theta: float = 1.0
    lam: float = 0.1

    def check(self) -> None:
        """One-line errors naming the option and its range."""
        _int_range("--cache-window", self.window, 1, 100_000)
        _in_range("--cache-theta", self.theta, 0.0, 100.0)
        if not (math.isfinite(self.lam) and 0 <= self.lam < 1):
            raise RnnkitError(f"--cache-lambda must be in [0, 1), got {self.lam}")


@dataclass(frozen=True)
class AdaptSettings:
    """What to adapt with (``methods``: ``dynamic``, ``cache`` or both) and how."""

    methods: tuple[str, ...]
    dynamic: DynamicSettings = DynamicSettings()
    cache: CacheSettings = CacheSettings()

    def check(self) -> None:
        if "dynamic" in self.methods:
            self.dynamic.check()
        if "cache" in self.methods:
            self.cache.check()

    def as_dict(self) -> dict[str, Any]:
        """The settings that apply, JSON-ready."""
        out: dict[str, Any] = {"methods": ",".join(self.methods)}
        if "dynamic" in self.methods:
            out["dynamic"] = dataclasses.asdict(self.dynamic)
        if "cache" in self.methods:
            out["cache"] = dataclasses.asdict(self.cache)
        return out


def _in_range(option: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise RnnkitError(f"{option} must be a number in [{low:g}, {high:g}], got {value}")


def _int_range(option: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RnnkitError(f"{option} must be an integer in [{low}, {high}], got {value}")


def parse_methods(text: str) -> tuple[str, ...]:
    """``dynamic``, ``cache``, ``dynamic,cache`` (either order) as a tuple, else a one-line error."""
    parts = tuple(p.strip() for p in text.split(","))
    if not parts or any(p not in ("dynamic", "cache") for p in parts) or len(set(parts)) != len(parts):
        raise RnnkitError(f"--adapt must be one of {', '.join(METHODS)}, got {text!r}")
    return tuple(m for m in ("dynamic", "cache") if m in parts)


def load_settings(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``adapt.json`` of a run holds (None when the run has none); a broken file is a
    one-line error naming it."""
    path = Path(run_dir) / ADAPT_FILE
    if not path.exists():
        return None
    stored = read_json(path, f"{path}: no such file", "adaptation settings file")
    try:
        if not isinstance(stored, dict):
            raise TypeError("not an object")
        dynamic = DynamicSettings(**stored["dynamic"]) if "dynamic" in stored else None
        cache = CacheSettings(**stored["cache"]) if "cache" in stored else None
        for part in (dynamic, cache):
            if part is not None:
                part.check()
    except (TypeError, KeyError, RnnkitError) as err:
        raise RnnkitError(
            f"{path}: corrupted adaptation settings file ({err}); run 'rnnkit tune-adapt' again or remove it"
        ) from None
    return {"dynamic": dynamic, "cache": cache, "record": stored}


def resolve(
    run_dir: str | os.PathLike[str], methods: str | Sequence[str], **given: Any
) -> tuple[AdaptSettings, str]:
    """The settings of ``methods``: the run's tuned ones (``adapt.json``) where it has them,
    else the papers'; each setting in ``given`` (``lr=``, ``decay=``, ``segment=``,
    ``window=``, ``theta=``, ``cache_lambda=``, ... not None) overrides. Returns the settings
    and where they came from (``adapt.json``, ``defaults``, and ``options`` when given)."""
    chosen = parse_methods(methods) if isinstance(methods, str) else parse_methods(",".join(methods))
    stored = load_settings(run_dir)
    dynamic = (stored or {}).get("dynamic") or DynamicSettings()
    cache = (stored or {}).get("cache") or CacheSettings()
    source = ADAPT_FILE if stored else "defaults"
    given = {k: v for k, v in given.items() if v is not None}
    dyn_keys = {f.name for f in dataclasses.fields(DynamicSettings)}
    cache_keys = {"window": "window", "theta": "theta", "cache_lambda": "lam"}
    unknown = set(given) - dyn_keys - set(cache_keys)
    if unknown:
        raise RnnkitError(f"unknown adaptation settings: {', '.join(sorted(unknown))}")
    dynamic = dataclasses.replace(dynamic, **{k: v for k, v in given.items() if k in dyn_keys})
    cache = dataclasses.replace(cache, **{cache_keys[k]: v for k, v in given.items() if k in cache_keys})
    settings = AdaptSettings(chosen, dynamic, cache)
    settings.check()
    return settings, source + (" and options" if given else "")
