"""Clipping (Mikolov; Pascanu et al. 2013): the same Elman LM at high learning rates, clipped or not.

An IRNN language model (a ReLU Elman network whose W_hh starts as the identity, Le et al.
2015: its gradients can grow step after step) learns the long-range corpus by plain SGD.
Every run logs the pre-clip gradient norm at every step; an *exploding* step is one whose
norm exceeds ten times the run's median; a run *diverges* when its loss or gradient stops
being finite (training stops there) or it ends worse than it began.

``rnnkit experiment clipping`` (:func:`experiment`, :func:`draw`): each rate of
:class:`Setup`, clipped and not, its losses and pre-clip norms step by step.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.analysis import plots
from rnnkit.config import ModelConfig
from rnnkit.data.synthetic import LongRange
from rnnkit.experiments.common import TINY_STEPS, flag, suffix
from rnnkit.models.config import build_model
from rnnkit.training.clipping import clip_gradients

FILES = ("clipping_loss.png", "clipping_norms.png")
"""What :func:`draw` writes."""


@dataclass(frozen=True)
class Setup:
    rates: tuple[float, ...] = (0.1, 0.3, 1.0)
    clip: float = 1.0  # by global norm; the unclipped runs measure the norm with max_norm = inf
    steps: int = 400
    batch: int = 32
    length: int = 61
    hidden: int = 64


@dataclass
class Result:
    lr: float
    clipped: bool
    losses: list[float] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)
    stopped_at: int | None = None

    @property
    def exploding(self) -> int:
        finite = [n for n in self.norms if math.isfinite(n)]
        if not finite:
            return 0
        median = statistics.median(finite)
        return sum(1 for n in self.norms if not math.isfinite(n) or n > 10 * median)

    @property
    def diverged(self) -> bool:
        return self.stopped_at is not None or self.losses[-1] > self.losses[0]


def run(lr: float, clipped: bool, setup: Setup, seed: int, device: str | torch.device = "cpu") -> Result:
    """Train by SGD at ``lr`` on ``device``, clipped at ``setup.clip`` or not, logging the pre-clip norm."""
    task = LongRange()
    torch.manual_seed(seed)
    config = ModelConfig(cell="irnn", embed_size=32, hidden_size=setup.hidden, num_layers=1)
    model = build_model(config, len(task.tokens)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)  # the same batches for every run
    result = Result(lr, clipped)
    for step in range(setup.steps):
        distances = torch.randint(LongRange.MIN_DISTANCE, setup.length, (setup.batch,), generator=generator)
        tokens = task.batch(distances, setup.length, generator)[0].to(device)
        logp, _ = model.log_prob(tokens[:-1], tokens[1:])
        loss = -logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(model.parameters(), setup.clip if clipped else math.inf)
        result.losses.append(loss.item())
        result.norms.append(norm)
        if not (math.isfinite(loss.item()) and math.isfinite(norm)):
            result.stopped_at = step
            break
        optimizer.step()
    return result


def experiment(seed: int, scale: str, device: torch.device) -> dict:
    """The experiment at ``scale``: each rate clipped and not, a table on stdout; returns the results."""
    setup = Setup(steps={"tiny": TINY_STEPS, "small": 400, "full": 2000}[scale])
    vocab = len(LongRange().tokens)
    uniform = math.log(vocab)
    print(f"clipping: an IRNN language model by SGD, seed {seed}, on {device}: {setup}")
    print(f"{'lr':>5} {'clipped':>8} {'final loss':>10} {'max norm':>10} {'exploding':>9} {'diverged':>9}")
    rows = []
    for lr in setup.rates:
        for clipped in (False, True):
            r = run(lr, clipped, setup, seed, device)
            finite = [n for n in r.norms if math.isfinite(n)]
            row = {
                "lr": lr,
                "clipped": clipped,
                "final_loss": r.losses[-1],
                "max_norm": max(finite) if finite else math.inf,
                "exploding_steps": r.exploding,
                "diverged": r.diverged,
                "stopped_at": r.stopped_at,
                "flags": [],
                "losses": r.losses,
                "norms": r.norms,
            }
            if math.isfinite(r.losses[-1]) and r.losses[-1] >= uniform:
                flag(row, f"final loss ≥ ln {vocab} = {uniform:.2f}: no better than a uniform guess")
            rows.append(row)
            stop = "" if r.stopped_at is None else f" (step {r.stopped_at})"
            print(
                f"{lr:5.2g} {'yes' if clipped else 'no':>8} {r.losses[-1]:10.3f} {row['max_norm']:10.2e} "
                f"{r.exploding:9d} {('yes' + stop) if r.diverged else 'no':>9}" + suffix(row),
                flush=True,
            )
    return {"setup": setup.__dict__, "vocab": vocab, "uniform_loss": uniform, "rows": rows}


def draw(out: Path, results: dict, caption: str) -> None:
    """Each run's loss and pre-clip gradient norm by step (:data:`FILES`); a diverged run ends in an x."""
    clip = results["setup"]["clip"]

    def series(key: str) -> dict:
        return {
            f"lr {row['lr']:g}, {'clipped' if row['clipped'] else 'not clipped'}": (
                list(range(len(row[key]))),
                row[key],
            )
            for row in results["rows"]
        }

    stopped = "not finite: the run diverged and stopped here"
    plots.measured_curves(
        series("losses"),
        out / "clipping_loss.png",
        "training step",
        "training loss (nats, one batch)",
        "Clipping: an IRNN language model by SGD" + caption,
        log_y=True,
        hline=(results["uniform_loss"], f"uniform guess (ln {results['vocab']})"),
        lost=stopped,
    )
    # clip_gradients returns (and the run logs) the norm *before* clipping; a clipped run's
    # applied update is then scaled down to norm `clip`, so its plotted norm may exceed it.
    plots.measured_curves(
        series("norms"),
        out / "clipping_norms.png",
        "training step",
        "gradient norm before clipping",
        f"Exploding gradients: the logged norm is before clipping\n"
        f"(a clipped run's applied update is scaled down to norm {clip:g})" + caption,
        log_y=True,
        hline=(clip, f"clipping threshold {clip:g}"),
        lost=stopped,
    )
