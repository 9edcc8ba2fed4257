"""Parameter averaging for NT-ASGD: the running mean of the weights after every step.

Merity, Keskar & Socher (2018) train with plain SGD until validation stops improving
(non-monotonically: worse than the best of all but the last ``nonmono`` epochs), then
keep stepping with SGD while averaging the iterates (Polyak & Juditsky 1992) and evaluate
and save the average. torch's ``ASGD`` with ``t0=0, lambd=0`` computes the same mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class ParameterAverage:
    """The mean of a model's parameters over the steps since :meth:`start`.

    After n updates the average is (1/n) Σ_{i=1..n} θ_i, kept as a running mean
    a ← a + (θ − a)/n. :meth:`swapped` puts it into the model for evaluation or saving.
    """

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self.params = list(params)
        self.average: list[torch.Tensor] | None = None
        self.count = 0

    @property
    def active(self) -> bool:
        return self.average is not None

    def start(self) -> None:
        """Begin averaging with the next step's weights."""
        self.average = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimizer step)."""
        if self.average is None:
            return
        self.count += 1
        for a, p in zip(self.average, self.params):
            a.lerp_(p.detach(), 1.0 / self.count)  # in place: half the memory traffic of a + (p - a)/n

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the model holds the average (if averaging); afterwards its own weights."""
        if self.average is None or self.count == 0:
            yield
            return
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, o in zip(self.params, own):
                    p.copy_(o)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON record, tensors) to resume from."""
        tensors = {f"average.{i}": a for i, a in enumerate(self.average or [])}
        return {"active": self.active, "count": self.count}, tensors

    def load(self, record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`state` saved."""
        if not record["active"]:
            self.average, self.count = None, 0
            return
        self.average = [tensors[f"average.{i}"].to(p.device, p.dtype) for i, p in enumerate(self.params)]
        self.count = int(record["count"])
