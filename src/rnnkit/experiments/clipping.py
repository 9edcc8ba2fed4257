"""Clipping (Mikolov; Pascanu et al. 2013): the same Elman LM at high learning rates, clipped or not.

An IRNN language model (a ReLU Elman network whose W_hh starts as the identity, Le et al.
2015: its gradients can grow step after step) learns the long-range corpus by plain SGD.
Every run logs the pre-clip gradient norm at every step; an *exploding* step is one whose
norm exceeds ten times the run's median; a run *diverges* when its loss or gradient stops
being finite (training stops there) or it ends worse than it began.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch

from rnnkit.config import ModelConfig
from rnnkit.data.synthetic import LongRange
from rnnkit.models.config import build_model
from rnnkit.training.clipping import clip_gradients


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
