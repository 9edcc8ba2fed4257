"""Dropout for recurrent networks: locked (one mask per sequence), on embedding rows, on weights.

The AWD-LSTM regularisers (Merity, Keskar & Socher 2018) in three small functions, shared
by the reference and the fast paths so both draw the same masks in the same order:

* :func:`dropout` with ``locked=True``: variational dropout (Gal & Ghahramani 2016), one
  mask per sequence and feature, the same at every time step;
* :func:`drop_rows`: embedding dropout, whole words removed from the embedding matrix;
* :func:`drop_weight`: DropConnect on a weight matrix (Wan et al. 2013), one mask per
  forward pass, so every time step sees the same dropped :math:`W_{hh}`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dropout(x: Tensor, p: float, training: bool, locked: bool = False) -> Tensor:
    """Dropout on a time-major ``(L, N, H)`` sequence; ``locked`` shares the mask over time."""
    if not training or p == 0.0:
        return x
    if not locked:
        if x.device.type != "cpu":
            return F.dropout(x, p, True)  # one fused kernel
        # On CPU torch's Bernoulli sampler is most of dropout's cost (1.24 ms for a 700 x 200
        # batch on 2 cores, against 0.47 ms for as many uniforms): keep u >= p for u ~ U[0, 1),
        # which is Bernoulli(1 - p) all the same (bench/RESULTS.md, "Dropout masks").
        keep = torch.rand(x.shape, device=x.device) >= p
        return x * keep.to(x.dtype).mul_(0.0 if p >= 1.0 else 1.0 / (1.0 - p))
    mask = x.new_empty((1, *x.shape[1:])).bernoulli_(1.0 - p) / (1.0 - p)
    return x * mask


def drop_rows(weight: Tensor, p: float, training: bool) -> Tensor:
    """Embedding dropout: zero whole rows (words) of ``weight``, scale the rest by 1/(1-p)."""
    if not training or p == 0.0:
        return weight
    mask = weight.new_empty((weight.shape[0], 1)).bernoulli_(1.0 - p) / (1.0 - p)
    return weight * mask


def drop_weight(weight: Tensor, p: float, training: bool) -> Tensor:
    """DropConnect: zero each entry of ``weight`` with probability ``p``, scale the rest."""
    if not training or p == 0.0:
        return weight
    return F.dropout(weight, p, True)
