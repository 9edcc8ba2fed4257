"""What a user sees while a run trains: a bar on a terminal, plain periodic lines in a log.

On a terminal, each epoch has a tqdm bar headed ``epoch 3/13`` whose tail holds the
running loss (from the first step), the learning rate, the gradient norm, the speed in
the units the task counts and the ETA of the whole run. Anywhere else (stderr redirected to
a file or a pipe) there are no ``\\r`` frames: one plain line at the run's first step, at
each quarter of an epoch and at least every ``interval`` seconds.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from rnnkit.tasks import task_kind

QUARTERS = 4  # plain lines: one at each quarter of an epoch


def eta_seconds(elapsed: float, steps_done: int, steps_left: int) -> float | None:
    """Seconds until the run ends if it goes on at the rate so far: ``steps_left`` steps at
    ``steps_done`` steps per ``elapsed`` seconds (validation included, as it was in
    ``elapsed``); None before the first step, when there is no rate yet."""
    if steps_done <= 0 or not elapsed > 0:
        return None
    return max(steps_left, 0) * elapsed / steps_done


def steps_left(epoch: int, epochs: int, done: int, total: int) -> int:
    """Steps from here to the end of the run: the rest of epoch ``epoch`` (``done`` of its
    ``total`` taken) and the ``epochs - epoch`` epochs after it, each as long as this one.
    Early stopping (``train.patience``) can only end the run sooner."""
    return max(total - done, 0) + max(epochs - epoch, 0) * total


def duration(seconds: float | None) -> str:
    """``seconds`` for a person: ``45s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rate_unit(task: str, level: str = "word") -> str:
    """What the speed counts: a language model's tokens (words, characters, subwords, symbols),
    a tagger's words, a classifier's sentences (what each task's ``Step.count`` adds up, as the
    task's class says: :meth:`rnnkit.tasks.base.TaskKind.count_unit`)."""
    return f"{task_kind(task).count_unit(level)}s/s"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """The progress of one training session: a bar or plain lines on ``stream`` (stderr).

    Args:
        epochs: the run's number of epochs (``train.epochs``).
        unit: what the speed counts, e.g. ``words/s`` (:func:`rate_unit`).
        enabled: False: nothing is shown (``--no-progress``; ranks other than 0).
        stream: where to write (default: ``sys.stderr`` at the time of writing).
        interval: plain lines: at most this many seconds apart.
    """

    def __init__(
        self,
        epochs: int,
        unit: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 30.0,
    ) -> None:
        self.epochs, self.unit, self.enabled, self.interval = epochs, unit, enabled, interval
        self._stream = stream
        self.start = time.perf_counter()
        self.steps = 0  # taken in this session (a resumed run's rate is its own)
        self.epoch, self.total, self.done = 1, 0, 0
        self.bar: tqdm[Any] | None = None
        self._last_line = self.start
        self._quarter = 0

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def begin(self, epoch: int, total: int, done: int) -> None:
        """Epoch ``epoch`` starts (or resumes) with ``done`` of its ``total`` steps taken."""
        self.epoch, self.total, self.done = epoch, total, done
        self._quarter = done * QUARTERS // max(total, 1)
        if self.enabled and is_terminal(self.stream):
            self.bar = tqdm(
                total=total,
                initial=done,
                desc=f"epoch {epoch}/{self.epochs}",
                unit="batch",
                leave=False,
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )

    def eta(self) -> float | None:
        """Seconds left in the run at this session's rate so far."""
        left = steps_left(self.epoch, self.epochs, self.done, self.total)
        return eta_seconds(time.perf_counter() - self.start, self.steps, left)

    def step(self, figures: dict[str, float] | None, lr: float, norm: float, rate: float) -> None:
        """One step taken; ``figures`` (the running loss …) are None when not measured now."""
        self.steps += 1
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            if figures is not None:  # before the update, which may redraw the bar
                self.bar.set_postfix_str(self.describe(figures, lr, norm, rate), refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        quarter = self.done * QUARTERS // max(self.total, 1)
        due = self.steps == 1 or quarter > self._quarter or now - self._last_line >= self.interval
        if figures is not None and due and self.done < self.total:
            percent = 100 * self.done / max(self.total, 1)
            head = f"epoch {self.epoch}/{self.epochs} | {percent:3.0f}% {self.done}/{self.total} batches"
            self.write(f"{head} | {self.describe(figures, lr, norm, rate)}")
            self._last_line, self._quarter = now, quarter

    def describe(self, figures: dict[str, float], lr: float, norm: float, rate: float) -> str:
        running = " ".join(f"{k} {v:.4g}" for k, v in figures.items())
        speed = f"{rate:.0f} {self.unit}"
        return f"{running} | lr {lr:.3g} | gnorm {norm:.3g} | {speed} | ETA {duration(self.eta())}"

    def end(self) -> None:
        """The epoch's batches are done: the bar goes (the epoch's line replaces it)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def write(self, line: str) -> None:
        """A line of the log, above the bar when there is one."""
        tqdm.write(line, file=self.stream)
        self.stream.flush()

    def seconds(self) -> float:
        """Wall time of this session so far."""
        return time.perf_counter() - self.start
