"""Learning-rate schedules as pure functions of the epoch and the validation history."""

from __future__ import annotations

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
