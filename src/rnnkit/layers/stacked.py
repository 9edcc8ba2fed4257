"""Deep recurrent networks: each layer passes its whole output sequence to the next."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from rnnkit.layers.dropout import dropout

Layer = Callable[[Tensor, Any, "Tensor | None"], tuple[Tensor, Any]]
"""``layer(input, state, lengths) -> (output, final state)``: a :class:`~rnnkit.layers.Recurrent`,
a :class:`~rnnkit.layers.Bidirectional`, or a layer kernel bound to its weights (``RNN``)."""


def stack_layers(
    layers: Sequence[Layer],
    input: Tensor,
    states: Sequence[Any],
    lengths: Tensor | None,
    p: float,
    training: bool,
    locked: bool,
) -> tuple[Tensor, list]:
    r"""Run ``layers`` in depth with dropout between them (never after the last).

    .. math::
        h^{(1)}_{1:L} = \text{layer}_1(x_{1:L}),\qquad
        h^{(k)}_{1:L} = \text{layer}_k\left(\text{dropout}(h^{(k-1)}_{1:L})\right)

    The depth loop of both :class:`Stacked` and ``RNN``. ``states`` holds one state per
    layer; ``p``, ``training`` and ``locked`` are :func:`~rnnkit.layers.dropout.dropout`'s.
    Returns the last layer's output and the list of each layer's final state.
    """
    x, finals = input, []
    for k, (layer, state) in enumerate(zip(layers, states)):
        if k > 0:
            x = dropout(x, p, training, locked)
        x, final = layer(x, state, lengths)
        finals.append(final)
    return x, finals


class Stacked(nn.Module):
    r"""Stack layers in depth, with dropout between them (never after the last).

    .. math::
        h^{(1)}_{1:L} = \text{layer}_1(x_{1:L}),\qquad
        h^{(k)}_{1:L} = \text{layer}_k\left(\text{dropout}(h^{(k-1)}_{1:L})\right)

    Args:
        layers: :class:`~rnnkit.layers.Recurrent` or
            :class:`~rnnkit.layers.Bidirectional` modules, input sizes chained.
        dropout: probability of zeroing an element between layers in training mode.
        locked: one mask per sequence and feature, shared by every step (variational
            dropout, Gal & Ghahramani 2016).

    Inputs: ``input`` (L, N, H_in); ``states`` one state per layer (or ``None``);
    ``lengths`` (N,) or ``None``.
    Outputs: the last layer's output; the list of each layer's final state.
    """

    def __init__(self, layers: Sequence[nn.Module], dropout: float = 0.0, locked: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout, self.locked = dropout, locked

    def forward(
        self, input: Tensor, states: Sequence | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, list]:
        states = [None] * len(self.layers) if states is None else states
        return stack_layers(self.layers, input, states, lengths, self.dropout, self.training, self.locked)
