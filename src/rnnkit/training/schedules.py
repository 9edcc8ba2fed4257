"""Learning-rate schedules as pure functions of the epoch and the validation history."""

from __future__ import annotations

import math
from collections.abc import Sequence


def zaremba_lr(base: float, epoch: int, decay_start: int, decay: float) -> float:
    """Zaremba et al. 2014: ``base`` for epochs 1..decay_start, then times ``decay`` each epoch."""
    return base * decay ** max(0, epoch - decay_start)


def plateau_lr(lr: float, valid_history: Sequence[float], factor: float) -> float:
    """The PyTorch word-LM example: divide by ``1/factor`` when validation loss did not improve.

    ``valid_history`` holds every epoch's validation loss so far, the latest last.
    """
    if len(valid_history) >= 2 and valid_history[-1] >= min(valid_history[:-1]):
        return lr * factor
    return lr


def nonmonotone_trigger(valid_history: Sequence[float], nonmono: int) -> bool:
    """NT-ASGD's switch (Merity et al. 2018): the latest validation loss is worse than the
    best of all epochs before the last ``nonmono`` ones."""
    return len(valid_history) > nonmono and valid_history[-1] > min(valid_history[:-nonmono])


def cosine_factor(step: int, total: int, warmup: int = 0) -> float:
    """The share of the base rate for step ``step`` (0-based) of ``total``: a linear warm-up
    over the first ``warmup`` steps (1/warmup, 2/warmup, ..., 1), then half a cosine from 1
    down to 0 at step ``total`` (Loshchilov & Hutter 2017, without restarts); 0 past it."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))
