"""IRNN (Le, Jaitly & Hinton 2015): a ReLU Elman cell started at the identity."""

from __future__ import annotations

import torch
from torch import nn

from rnnkit.cells.elman import ElmanCell
from rnnkit.errors import RnnkitError


def irnn_cell(
    input_size: int,
    hidden_size: int,
    scale: float = 1.0,
    input_std: float = 0.001,
    bias: bool = True,
    learn_initial_state: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ElmanCell:
    r"""Build the lecture's fix for vanishing gradients: identity init + ReLU.

    .. math::
        h_t = \max\left(0,\; W^{(hh)} h_{t-1} + W^{(hx)} x_t + b\right),\qquad
        W^{(hh)}_0 = \text{scale}\cdot I,\quad W^{(hx)}_0 \sim \mathcal{N}(0, \sigma^2),\quad b_0 = 0

    At initialisation the recurrence copies h forward unchanged, so
    :math:`\partial h_t / \partial h_k` is the identity on active units and gradients
    neither vanish nor explode (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize
    Recurrent Networks of Rectified Linear Units"; the idea comes from Socher et al. 2013).

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t.
        scale: multiple of the identity for W_hh (the paper's "iRNN" uses 1; smaller
            values such as 0.01 are its "np-RNN"-style variants).
        input_std: standard deviation σ of W_hx (the paper: 0.001).
        bias: keep (zero-initialised) biases.
        learn_initial_state: learn h_0 instead of starting from zeros.

    .. note::
        An IRNN needs gradient clipping: with W_hh = I and ReLU, nothing bounds the
        growth of h or of the gradient (the paper clips; so should you, e.g.
        ``max_norm`` 1 to 10).
    """
    if input_std < 0:
        raise RnnkitError(f"input_std must be >= 0, got {input_std!r}")
    cell = ElmanCell(input_size, hidden_size, "relu", bias, learn_initial_state, device, dtype)
    with torch.no_grad():
        cell.weight_hh.copy_(scale * torch.eye(hidden_size))
        nn.init.normal_(cell.weight_ih, mean=0.0, std=input_std)
        if bias:
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
    return cell
