"""Every number ``rnnkit explore`` shows, computed on the inference and diagnostic code the CLI uses.

An :class:`Explorer` holds the runs (:mod:`rnnkit.explore.runs`, rebuilt by
:func:`rnnkit.inference.load`) and answers the page's questions about a text
(:mod:`rnnkit.explore.views`): surprisal and next tokens (a language model's
:class:`~rnnkit.inference.LineScore` and its head), tags or class probabilities (the run's
own ``tag``/``classify``), the values inside a layer, the units a selected span turns on, the
map of ||∂E_t/∂h_k|| (:mod:`rnnkit.explore.sweep`, checked against
:func:`~rnnkit.analysis.gradient_flow.gradient_matrix`) and the run's training log.

A text is read once per run (:class:`~rnnkit.explore.reading.Reading`): its tokens, one float64
forward pass recording every layer-direction, and every answer computed on it are kept for the
few texts read last (:data:`CACHED_TEXTS`), so the page's several requests about one text share
one forward pass. Each model computes one question at a time: the trained model (the text's
surprisal, tags or classes) under one lock, its float64 probe (the values inside, the units,
the gradient map) under another, so with ``threads`` >= 2 the text's answer is computed beside
the others, never queued behind the gradient map; the probe's share is ``threads - 1``, over which
the gradient map's rows are split (:func:`rnnkit.explore.sweep.gradient_matrix`). With one
thread, one lock for all.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from rnnkit.errors import RnnkitError
from rnnkit.explore import views
from rnnkit.explore.reading import GATE_NAMES, MAX_CHARS, MAX_TOKENS, Reading, step_values, value_range
from rnnkit.explore.runs import QUANTITIES, Run, training_log, validation_sample
from rnnkit.explore.sweep import Recording
from rnnkit.explore.views import GRADIENT_TOKENS, SNIPPETS, default_threshold, on_units, snippets

__all__ = ["GRADIENT_TOKENS", "MAX_CHARS", "MAX_TOKENS", "Explorer"]

CACHED_TEXTS = 8
"""Texts whose readings (tokens, traces, results) are kept, per explorer."""

MAX_K = 50
"""Top-k next tokens at most."""

LABELS = {
    "h": "hidden state h_t",
    "c": "memory cell c_t",
    "i": "input gate i_t",
    "f": "forget gate f_t",
    "o": "output gate o_t",
    "z": "update gate z_t",
    "r": "reset gate r_t",
}
assert set(LABELS) == {"h", "c", *GATE_NAMES}


class Explorer:
    """The runs ``rnnkit explore`` shows and every answer of its API (see
    :mod:`rnnkit.explore.app`), each model computing one at a time (see the module's docstring
    for ``threads``)."""

    def __init__(
        self,
        runs: list[str | os.PathLike[str]],
        which: str = "best",
        device: torch.device | str = "cpu",
        threads: int = 1,
        precision: torch.dtype = torch.float64,
        load_probes: bool = True,
    ) -> None:
        device = torch.device(device)
        self.threads = max(1, threads)
        self.precision = precision
        """What the gradient map's sweep carries (:func:`rnnkit.explore.sweep.gradient_matrix`)."""
        self.runs = [Run(i, path, which, device) for i, path in enumerate(runs)]
        self.notes = [note for run in self.runs for note in run.notes]
        for run in self.runs if load_probes else []:  # False: another process asks the probes
            if not run.training:
                # a broken checkpoint is a one-line error now, not on the page; the float64 probe
                # and its first standalone cell (the first costs seconds of imports) before any text
                run.probe().cell(0)
        self.lock = threading.Lock()
        """Held while the trained models compute (and, with one thread, for everything)."""
        self.probe_lock = self.lock if self.threads == 1 else threading.Lock()
        """Held while the float64 probes compute: the recordings and what is read from them."""
        self.cache_lock = threading.Lock()
        self.held = threading.local()
        """Per thread: ``waited``, the milliseconds its last question waited for a lock."""
        self.cache: OrderedDict[tuple[int, str], Reading] = OrderedDict()
        self.samples: dict[tuple[int, int, str], Any] = {}

    # -- the API ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"runs": [run.describe() for run in self.runs]}

    def analyze(self, run: int, text: str, k: int = 5) -> dict[str, Any]:
        if not 1 <= k <= MAX_K:
            raise RnnkitError(f"k: must be in [1, {MAX_K}], got {k}")
        with self._hold(self.lock):
            reading = self.reading(run, text)
            key = ("analyze", k)
            if key not in reading.results:
                reading.results[key] = views.analysis(reading, k)
            return reading.results[key]

    def inside(
        self, run: int, text: str, layer: int, direction: int, quantity: str, digits: int | None = None
    ) -> dict[str, Any]:
        """The quantity's values (T, H) in the layer-direction; with ``digits``, each rounded to
        that many significant digits of its colour range (what the page draws needs no more, and
        the answer is then a third of the size), else as computed."""
        with self._hold(self.probe_lock):
            reading = self.reading(run, text)
            key = ("inside", layer, direction, quantity, digits)
            if key not in reading.results:
                values, lo, hi = self._values(reading, layer, direction, quantity)
                reading.results[key] = {
                    "tokens": reading.shown,
                    "values": (values if digits is None else shown(values, lo, hi, digits)).tolist(),
                    "range": [lo, hi],
                    "label": LABELS[quantity],
                    "layer": layer,
                    "direction": direction,
                    "quantity": quantity,
                    "notes": reading.notes,
                }
            return reading.results[key]

    def units(
        self,
        run: int,
        text: str,
        layer: int,
        direction: int,
        quantity: str,
        start: int,
        end: int,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        with self._hold(self.probe_lock):
            reading = self.reading(run, text)
            values, lo, hi = self._values(reading, layer, direction, quantity)
            T = values.shape[0]
            if not 0 <= start < end <= T:
                raise RnnkitError(f"start, end: a span of the text's {T} tokens (0 <= start < end <= {T})")
            threshold = default_threshold(quantity, lo, hi) if threshold is None else threshold
            found = on_units(values, start, end)
            sample = self._sample(reading.run, layer, direction, quantity)
            notes = [] if sample else ["the run's validation text is not reachable: no examples from it"]
            elsewhere = (
                [
                    {"unit": u["unit"], "snippets": snippets(sample, u["unit"], threshold)}
                    for u in found[:SNIPPETS]
                ]
                if sample
                else []
            )
            return {"units": found, "elsewhere": elsewhere, "threshold": threshold, "notes": notes}

    def gradient(self, run: int, text: str, layer: int, direction: int) -> dict[str, Any]:
        with self._hold(self.probe_lock):
            reading = self.reading(run, text)
            key = ("gradient", layer, direction)
            if key not in reading.results:
                index = self._index(reading.run, layer, direction)
                reading.results[key] = views.gradient(
                    reading, index, max(1, self.threads - 1), self.precision
                )
            return reading.results[key]

    def training(self, run: int) -> dict[str, Any]:
        return training_log(self._run(run))

    # -- helpers ------------------------------------------------------------------------------------
    @contextmanager
    def _hold(self, lock: threading.Lock) -> Iterator[None]:
        """``lock`` held, the wait for it recorded in :attr:`held` (the server reports it)."""
        start = time.perf_counter()
        with lock:
            self.held.waited = (time.perf_counter() - start) * 1000
            yield

    def _run(self, run: int) -> Run:
        if not isinstance(run, int) or not 0 <= run < len(self.runs):
            raise RnnkitError(f"run: no run {run!r}; the runs are 0..{len(self.runs) - 1}")
        return self.runs[run]

    def reading(self, run: int, text: str) -> Reading:
        """The text as ``run`` reads it: kept for the :data:`CACHED_TEXTS` texts read last."""
        r = self._run(run)
        if not isinstance(text, str) or not text.strip():
            raise RnnkitError("text: empty; type some text")
        key = (run, text)
        with self.cache_lock:  # the two models' threads share the texts read
            reading = self.cache.get(key)
            if reading is not None and reading.trained is r.model():
                self.cache.move_to_end(key)
                return reading
            reading = self.cache[key] = Reading(r, text, lambda tokens: self._base(run, reading, tokens))
            while len(self.cache) > CACHED_TEXTS:
                self.cache.popitem(last=False)
            return reading

    def _base(self, run: int, reading: Reading, tokens: torch.Tensor) -> Recording | None:
        """Among the texts kept, a recording by the same model whose input shares the longest
        start with ``tokens`` (two tokens at least): what a new recording extends."""
        best, shared = None, 1
        with self.cache_lock:
            others = [r for (i, _), r in self.cache.items() if i == run and r is not reading]
        for other in others:
            if other.trained is not reading.trained:
                continue
            for recording in list(other.recordings.values()):
                old = recording.tokens
                if old is None:
                    continue
                n = min(len(old), len(tokens))
                differ = (old[:n, 0] != tokens[:n, 0]).nonzero()
                common = int(differ[0]) if len(differ) else n
                if common > shared:
                    best, shared = recording, common
        return best

    def _index(self, run: Run, layer: int, direction: int) -> int:
        m = run.config.model
        D = 2 if m.bidirectional else 1
        if not isinstance(layer, int) or not 0 <= layer < m.num_layers:
            raise RnnkitError(f"layer: must be in [0, {m.num_layers - 1}], got {layer!r}")
        if not isinstance(direction, int) or not 0 <= direction < D:
            raise RnnkitError(f"direction: must be in [0, {D - 1}], got {direction!r}")
        return layer * D + direction

    def _values(
        self, reading: Reading, layer: int, direction: int, quantity: str
    ) -> tuple[np.ndarray, float, float]:
        run = reading.run
        index = self._index(run, layer, direction)
        quantities = QUANTITIES.get(run.config.model.cell, ["h"])
        if quantity not in quantities:
            raise RnnkitError(f"quantity: one of {', '.join(quantities)} for this cell, got {quantity!r}")
        key = ("values", index, quantity)
        if key not in reading.results:
            values = step_values(reading.trace(index), quantity)[
                reading.offset : reading.offset + reading.steps
            ]
            reading.results[key] = (values, *value_range(run.config.model, quantity, values))
        return reading.results[key]

    def _sample(
        self, run: Run, layer: int, direction: int, quantity: str
    ) -> list[tuple[list[str], np.ndarray]]:
        """The quantity's values on a sample of the run's validation text: (tokens, values (T, H))
        per passage; [] when the text is not reachable."""
        key = (run.id, self._index(run, layer, direction), quantity)
        if key not in self.samples:
            out = []
            for passage in validation_sample(run):
                try:
                    reading = Reading(run, passage)
                except RnnkitError:
                    continue
                values = step_values(reading.trace(key[1]), quantity)[
                    reading.offset : reading.offset + reading.steps
                ]
                out.append((reading.shown, values))
            self.samples[key] = out
        return self.samples[key]


def shown(values: np.ndarray, lo: float, hi: float, digits: int) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits of the range [lo, hi] (a step of
    1e-3 on [-1, 1] with 4): far finer than the colours drawn from them."""
    largest = max(abs(lo), abs(hi))
    scale = math.floor(math.log10(largest)) if largest > 0 and math.isfinite(largest) else 0
    return np.round(values, max(0, digits - 1 - scale))
