"""What the one training loop asks of a task: its model, batches, a loss per batch, evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from rnnkit.config import RunConfig


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


Batches = tuple[Iterator[tuple[int, Any]], int, int]
"""An epoch's batches as ``(position after, batch)`` from a start, the epoch's number of
positions, and how many of them come before the start (for the progress bar)."""


def shuffled_batches(
    examples: Sequence[Any],
    batches: Sequence[Sequence[int]],
    seed: int,
    epoch: int,
    start: int,
    shard: tuple[int, int] = (0, 1),
) -> Batches:
    """A task's training batches for one epoch, ``(position after, examples)`` from ``start``:
    fixed batches (of similar lengths) in an order drawn from ``seed`` and ``epoch`` alone,
    so a resumed epoch continues the same order. Returns the iterator, the epoch's number of
    positions and how many are done.

    With ``shard = (rank, world)`` the order is dealt out: one step takes ``world`` positions
    and this rank gets the ``rank``-th of them; the last ``len % world`` positions are left
    out so that every rank takes the same number of steps.
    """
    drawn = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    order: list[int] = drawn.tolist()
    rank, world = shard
    used = len(order) - len(order) % world
    items = (
        (position + world, [examples[i] for i in batches[order[position + rank]]])
        for position in range(start, used, world)
    )
    return items, used // world, start // world


class Task(Protocol):
    """A task for :func:`rnnkit.training.loop.fit` (``lm``, ``tag``, ``classify``): what the
    loop, the CLI and :mod:`rnnkit.inference` call on a task built on a corpus."""

    @property
    def model(self) -> nn.Module:
        """The network being trained (a task class may narrow its type)."""
        ...

    equal_shares: bool
    """True when every rank's batch has the same count (no weighting of distributed figures)."""

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Batches:
        """The epoch's training batches from position ``start`` (see :data:`Batches`)."""
        ...

    def step(self, batch: Any, state: Any) -> Step:
        """The model's loss on one batch (the model is in training mode)."""
        ...

    def evaluate(self, split: str) -> dict[str, float]:
        """Figures on ``split`` (``valid`` or ``test``), ``loss`` among them."""
        ...

    def report(self, split: str) -> dict[str, Any]:
        """Per-label scores and the confusion matrix on ``split`` (labelling tasks; a language
        model refuses in one line)."""
        ...

    def has_split(self, split: str) -> bool:
        """Whether the corpus has ``split`` (``valid``, ``test``)."""
        ...

    def selection(self, figures: dict[str, float]) -> float:
        """What model selection, schedules and early stopping minimise (e.g. the loss, or -F1)."""
        ...

    def running(self, nll: float, count: float) -> dict[str, float]:
        """The progress bar's figures from the running sums."""
        ...

    def describe(self, split: str, figures: dict[str, float]) -> str:
        """One human line of figures."""
        ...

    def save(self, run_dir: Path) -> None:
        """Write what loading the run needs besides weights and config (vocabularies ...)."""
        ...


Data = Mapping[str, "str | None"]
"""Where a run's corpus is, as ``rnnkit train`` records it in data.json: ``data`` (a
directory, a file or a named corpus) and ``train``/``valid``/``test`` files (or None)."""


class TaskKind(Protocol):
    """A task class as the registry (:data:`rnnkit.tasks.TASKS`) holds it: it builds the task
    and owns how its corpus is read, summarised, and a trained run rebuilt."""

    perplexity: bool
    """Whether the task's loss is a cross-entropy per token shown as perplexity, or bits per
    character or symbol (a language model's); else it is drawn in nats, beside the figure
    that selects the best checkpoint."""

    def __call__(
        self, config: RunConfig, corpus: Any, device: torch.device, shard: tuple[int, int] = (0, 1)
    ) -> Task: ...

    def build_model(self, config: RunConfig, corpus: Any) -> nn.Module:
        """The task's model as ``config.model`` describes it, sized by ``corpus`` (its vocabularies)."""
        ...

    def load_corpus(self, data: Data, config: RunConfig) -> Any:
        """The training corpus ``data`` names, read as ``config`` says (``rnnkit train --data``)."""
        ...

    def resume_corpus(self, run_dir: Path, data: Data, config: RunConfig) -> Any:
        """The corpus of a run being resumed, with the run's own vocabularies (or a one-line
        error when the data no longer gives them)."""
        ...

    def summary(self, corpus: Any) -> str:
        """One line on what a corpus holds for this task (``vocabulary 10000, 929589 training tokens``)."""
        ...

    def from_run(
        self,
        run_dir: Path,
        config: RunConfig,
        device: torch.device,
        data: str | Path | None = None,
        which: str = "best",
    ) -> Task:
        """The task of a trained run: its saved vocabularies, the checkpoint ``which`` loaded
        into its model (in eval mode), and the held-out splits of ``data`` when given."""
        ...

    def line(self, config: RunConfig, split: str, figures: dict[str, float]) -> str:
        """One human line of a run's figures (what :meth:`Task.describe` writes)."""
        ...

    def fields(self, config: RunConfig) -> dict[str, str]:
        """What a JSON report of the figures says besides them (e.g. the language model's ``unit``)."""
        ...

    def next_commands(self, run: str, split: str) -> list[str]:
        """The two commands to try on a trained run (after ``rnnkit train``)."""
        ...

    def count_unit(self, level: str) -> str:
        """What one of :attr:`Step.count` is, singular (``word``, ``character``, ``sentence`` …),
        for a corpus read at ``level``: the unit of the training speed and of the loss."""
        ...


def rebuilt(task: Any, run_dir: Path, which: str, device: torch.device) -> Any:
    """``task`` (built on the CPU from a run's saved vocabularies) with the checkpoint
    ``which`` of ``run_dir`` loaded into its model, in eval mode on ``device``."""
    from rnnkit.training.checkpoint import load_checkpoint
    from rnnkit.training.rundir import RunDir

    load_checkpoint(RunDir(run_dir).checkpoint(which), task.model)
    task.model.to(device).eval()
    task.device = device
    return task


def sentence_task_commands(run: str, split: str) -> list[str]:
    """What to try next on a trained tagger or classifier (:meth:`TaskKind.next_commands`)."""
    return [f"rnnkit evaluate {run} --split {split} --report", f"rnnkit predict {run} FILE"]
