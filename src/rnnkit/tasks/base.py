"""What the one training loop asks of a task: its model, batches, a loss per batch, evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn


@dataclass
class Step:
    """One batch's result: ``loss`` is differentiated; the rest feeds the running figures.

    ``nll`` is the batch's summed negative log-likelihood over its ``count`` units (tokens
    or sentences); ``state`` is carried into the next batch (truncated BPTT) or None;
    ``lr_scale`` multiplies the learning rate for this step (AWD-LSTM's variable windows).
    """

    loss: Tensor
    nll: float
    count: int
    state: object = None
    lr_scale: float = 1.0


def shuffled_batches(
    examples: Sequence,
    batches: Sequence[Sequence[int]],
    seed: int,
    epoch: int,
    start: int,
    shard: tuple[int, int] = (0, 1),
):
    """A task's training batches for one epoch, ``(position after, examples)`` from ``start``:
    fixed batches (of similar lengths) in an order drawn from ``seed`` and ``epoch`` alone,
    so a resumed epoch continues the same order. Returns the iterator, the epoch's number of
    positions and how many are done.

    With ``shard = (rank, world)`` the order is dealt out: one step takes ``world`` positions
    and this rank gets the ``rank``-th of them; the last ``len % world`` positions are left
    out so that every rank takes the same number of steps.
    """
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    order = order.tolist()
    rank, world = shard
    used = len(order) - len(order) % world
    items = (
        (position + world, [examples[i] for i in batches[order[position + rank]]])
        for position in range(start, used, world)
    )
    return items, used // world, start // world


class Task(Protocol):
    """A task for :func:`rnnkit.training.loop.fit` (``lm``, ``tag``, ``classify``)."""

    model: nn.Module

    def batches(
        self, epoch: int, start: int, generator: torch.Generator
    ) -> tuple[Iterator[tuple[int, Any]], int]:
        """The epoch's training batches from position ``start`` as ``(position after, batch)``,
        and the epoch's total number of positions (for the progress bar)."""

    def step(self, batch: Any, state: object) -> Step:
        """The model's loss on one batch (the model is in training mode)."""

    def evaluate(self, split: str) -> dict[str, float]:
        """Figures on ``split`` (``valid`` or ``test``), ``loss`` among them."""

    def has_split(self, split: str) -> bool: ...

    def selection(self, figures: dict[str, float]) -> float:
        """What model selection, schedules and early stopping minimise (e.g. the loss, or -F1)."""

    def running(self, nll: float, count: int) -> dict[str, float]:
        """The progress bar's figures from the running sums."""

    def describe(self, split: str, figures: dict[str, float]) -> str:
        """One human line of figures."""

    def save(self, run_dir: Path) -> None:
        """Write what loading the run needs besides weights and config (vocabularies ...)."""
