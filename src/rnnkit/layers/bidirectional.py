"""Bidirectional composition: h_t = [h→_t; h←_t]."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.layers.recurrent import Recurrent


class Bidirectional(nn.Module):
    r"""Read the sequence both ways and concatenate, as the lecture's bidirectional RNN.

    .. math::
        \overrightarrow{h}_t = \text{cell}_\rightarrow(x_t, \overrightarrow{h}_{t-1}),\quad
        \overleftarrow{h}_t = \text{cell}_\leftarrow(x_t, \overleftarrow{h}_{t+1}),\quad
        h_t = [\overrightarrow{h}_t; \overleftarrow{h}_t]

    Args:
        forward_layer: a :class:`Recurrent` with ``reverse=False``.
        backward_layer: a :class:`Recurrent` with ``reverse=True``.

    Inputs: ``input`` (L, N, H_in); ``state`` a pair (forward, backward) or ``None``;
    ``lengths`` (N,) or ``None``.
    Outputs: ``output`` (L, N, 2H); final states as the pair (forward, backward).
    """

    def __init__(self, forward_layer: Recurrent, backward_layer: Recurrent) -> None:
        super().__init__()
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer

    def forward(
        self, input: Tensor, state: tuple[State, State] | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, tuple[State, State]]:
        state_fw, state_bw = (None, None) if state is None else state
        out_fw, final_fw = self.forward_layer(input, state_fw, lengths)
        out_bw, final_bw = self.backward_layer(input, state_bw, lengths)
        return torch.cat([out_fw, out_bw], dim=-1), (final_fw, final_bw)
