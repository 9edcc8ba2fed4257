"""Gradient clipping (Mikolov): by global norm and by value; the pre-clip norm is always returned."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def clip_gradients(
    parameters: Iterable[nn.Parameter], max_norm: float = math.inf, max_value: float | None = None
) -> float:
    """Clip gradients in place and return their global L2 norm *before* clipping.

    ``max_norm = inf`` only measures (the norm is logged every step either way);
    ``max_value`` also clips each element to [-max_value, max_value], after the norm.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if max_value is not None:
        torch.nn.utils.clip_grad_value_(params, max_value)
    return float(norm)
