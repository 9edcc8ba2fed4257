"""The long-range probe: "Jane walked into the room. ... Jane said hi to ___", at distance d.

Language models of each cell are trained on :class:`~rnnkit.data.synthetic.LongRange`
sequences (the ordinary next-word loss over every token, distances drawn uniformly, the
largest distance growing over the first 60% of training: a curriculum), then judged by
their accuracy at the blank as a function of d, next to the gradient norm
||∂E_blank/∂h_{blank-d}|| of the trained model (float64, :mod:`rnnkit.analysis.gradient_flow`).

``rnnkit experiment long-range`` (:func:`experiment`, :func:`draw`): the lecture's cells (:data:`LABELS`),
or any of :data:`CELLS` (``--cells``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.analysis import gradient_flow, plots
from rnnkit.config import ModelConfig
from rnnkit.data.synthetic import LongRange
from rnnkit.experiments.common import TINY_STEPS, flag, suffix
from rnnkit.models.config import build_model
from rnnkit.models.language_model import LanguageModel
from rnnkit.training.clipping import clip_gradients

CELLS = {  # label: (cell, options)
    "elman-sigmoid": ("elman", {"nonlinearity": "sigmoid"}),
    "elman-tanh": ("elman", {"nonlinearity": "tanh"}),
    "irnn": ("irnn", {}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
    # after the lecture (``--cells``)
    "lnlstm": ("lnlstm", {}),
    "mingru": ("mingru", {}),
    "minlstm": ("minlstm", {}),
    "slstm": ("slstm", {}),
}
LABELS = ("elman-sigmoid", "elman-tanh", "irnn", "gru", "lstm")
"""The cells run when ``--cells`` is not given (the lecture's)."""
FILES = ("long_range_accuracy.png", "long_range_gradient.png")
"""What :func:`draw` writes."""


@dataclass(frozen=True)
class Setup:
    """Everything that decides a run (printed with its results)."""

    length: int = 61  # the blank is the last token: distances up to 60
    hidden: int = 64
    embed: int = 32
    batch: int = 64
    steps: int = 1000
    lr: float = 1e-2  # Adam
    clip: float = 1.0  # Mikolov's clipping, by global norm
    curriculum: float = 0.6  # share of training over which the largest distance grows to the full length
    eval_sequences: int = 256


@dataclass
class Result:
    label: str
    accuracy: dict[int, float]
    gradient: dict[int, float]
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss at the blank)


def make_model(label: str, setup: Setup, vocab_size: int) -> LanguageModel:
    cell, options = CELLS[label]
    config = ModelConfig(cell=cell, embed_size=setup.embed, hidden_size=setup.hidden, num_layers=1, **options)
    return build_model(config, vocab_size)


def train(
    label: str, setup: Setup, seed: int, task: LongRange | None = None, device: str | torch.device = "cpu"
) -> tuple[LanguageModel, Result]:
    """Train one cell's language model on the long-range corpus on ``device``; returns it and its figures.

    The batches are drawn on the CPU (the same numbers on every device) and moved there.
    """
    task = task or LongRange()
    torch.manual_seed(seed)
    model = make_model(label, setup, len(task.tokens)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    generator = torch.Generator().manual_seed(seed)
    result = Result(label, {}, {}, 0.0)
    start = time.perf_counter()
    model.train()
    for step in range(setup.steps):
        grow = min(1.0, step / max(1.0, setup.curriculum * setup.steps))
        largest = LongRange.MIN_DISTANCE + 4 + int((setup.length - 1 - LongRange.MIN_DISTANCE - 4) * grow)
        distances = torch.randint(LongRange.MIN_DISTANCE, largest + 1, (setup.batch,), generator=generator)
        tokens = task.batch(distances, setup.length, generator)[0].to(device)
        logp, _ = model.log_prob(tokens[:-1], tokens[1:])
        loss = -logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), setup.clip)
        optimizer.step()
        if step % 50 == 0 or step == setup.steps - 1:
            result.curve.append((step, -logp[-1].mean().item()))
    result.seconds = time.perf_counter() - start
    return model, result


@torch.no_grad()
def accuracy(model: LanguageModel, task: LongRange, distance: int, setup: Setup, seed: int = 1234) -> float:
    """Share of held-out sequences whose most probable word at the blank is the name."""
    generator = torch.Generator().manual_seed(seed + distance)
    tokens, _, answer = task.batch(torch.full((setup.eval_sequences,), distance), setup.length, generator)
    model.eval()
    h, _ = model(tokens[:-1].to(next(model.parameters()).device))
    guess = model.head.log_probs(h[-1]).argmax(-1).cpu()
    return (guess == answer).double().mean().item()


def gradient_by_distance(
    model: LanguageModel, task: LongRange, setup: Setup, distances: list[int], seed: int = 4321
) -> dict[int, float]:
    """||∂E_blank/∂h_{blank-d}|| (float64, mean over 32 sequences whose name is 50 back)."""
    generator = torch.Generator().manual_seed(seed)
    name_at = min(50, setup.length - 1)
    tokens, _, _ = task.batch(torch.full((32,), name_at), setup.length, generator)
    tr = gradient_flow.trace(model, tokens)
    return gradient_flow.gradient_at(tr, tr.steps - 1, distances)


def experiment(seed: int, scale: str, device: torch.device, *, cells: Sequence[str] | None = None) -> dict:
    """The experiment at ``scale``: each cell's (``cells``, default :data:`LABELS`) accuracy
    and gradient by distance; returns the results."""
    setup = {
        "tiny": Setup(length=21, steps=TINY_STEPS, hidden=16, eval_sequences=32),
        "small": Setup(length=101, steps=2000),
        "full": Setup(length=101, steps=6000),
    }[scale]
    task = LongRange()
    # an accuracy this far under chance (two binomial standard errors) is no forgetting:
    # the model does not even guess a name at the blank at random
    floor = task.chance - 2 * math.sqrt(task.chance * (1 - task.chance) / setup.eval_sequences)
    distances = sorted({d for d in (4, 5, 10, 20, 30, 40, 50, 60, 80, 100) if d <= setup.length - 1})
    print(f"long-range probe, seed {seed}, on {device}: {setup}; chance {task.chance:.3f}")
    print(f"{'cell':14} " + " ".join(f"{'d=' + str(d):>6}" for d in distances) + f" {'train s':>8}")
    rows = []
    for label in cells or LABELS:
        model, r = train(label, setup, seed, task, device)
        acc = {d: accuracy(model, task, d, setup) for d in distances}
        gradient = gradient_by_distance(model, task, setup, list(range(setup.length - 1)))
        row = {"cell": label, "accuracy": acc, "gradient": gradient, "seconds": r.seconds, "flags": []}
        below = [d for d, a in acc.items() if a < floor]
        if below:
            flag(
                row,
                f"below chance at d = {', '.join(map(str, below))} (under {floor:.3f}): "
                "degenerate, not a memory effect",
            )
        print(
            f"{label:14} "
            + " ".join(f"{acc[d]:6.2f}" for d in distances)
            + f" {r.seconds:8.1f}"
            + suffix(row),
            flush=True,
        )
        rows.append(row)
    return {"setup": setup.__dict__, "chance": task.chance, "below_chance_under": floor, "rows": rows}


def draw(out: Path, results: dict, caption: str) -> None:
    """Accuracy at the blank and the gradient reaching back by distance, a line per cell (:data:`FILES`)."""
    rows = results["rows"]
    plots.measured_curves(
        {
            row["cell"] + (" (below chance: degenerate)" if row["flags"] else ""): (
                list(row["accuracy"]),
                list(row["accuracy"].values()),
            )
            for row in rows
        },
        out / "long_range_accuracy.png",
        "distance d",
        "accuracy at the blank",
        "Who remembers the name d words back?" + caption,
        hline=(results["chance"], "chance"),
    )
    plots.measured_curves(
        {row["cell"]: (list(row["gradient"]), list(row["gradient"].values())) for row in rows},
        out / "long_range_gradient.png",
        "distance d = t - k",
        "||∂E_t/∂h_(t-d)||",
        "Gradient reaching d steps back (trained models)" + caption,
        log_y=True,
    )
