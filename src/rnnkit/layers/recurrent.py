"""Run one cell over time, forward or reversed: the reference path's loop, and its layer kernel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.cells.base import RecurrentCell, State, hidden_of
from rnnkit.layers.state import flip_sequences, step_mask, where_state


class Recurrent(nn.Module):
    r"""Apply a cell at every step: :math:`s_t = \text{cell}(x_t, s_{t-1})`, emit :math:`h_t`.

    Args:
        cell: any :class:`~rnnkit.cells.RecurrentCell`.
        reverse: run from the last step to the first (the backward half of a
            bidirectional layer).

    Inputs: ``input`` (L, N, H_in); ``state`` the cell's state for N sequences, or
    ``None`` for the cell's initial state; ``lengths`` (N,) int64 on the input's device
    or ``None`` (already validated, see :func:`~rnnkit.layers.state.check_lengths`).

    Outputs: ``output`` (L, N, H), zero at padded steps; final state, taken at each
    sequence's own last token (its first token when ``reverse``).
    """

    def __init__(self, cell: RecurrentCell, reverse: bool = False) -> None:
        super().__init__()
        self.cell = cell
        self.reverse = reverse

    def forward(
        self, input: Tensor, state: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        L, N = input.shape[:2]
        x = flip_sequences(input, lengths) if self.reverse else input
        if state is None:
            state = self.cell.initial_state(N)
        mask = None if lengths is None else step_mask(lengths, L)
        outputs = []
        for t in range(L):
            new_state = self.cell(x[t], state)
            # Past a sequence's end its state stays as it was, so the final state is
            # the one at its last real token whatever the padding.
            state = new_state if mask is None else where_state(mask[t], new_state, state)
            outputs.append(hidden_of(state))
        output = torch.stack(outputs)
        if mask is not None:
            output = output.masked_fill(~mask, 0.0)
        if self.reverse:
            output = flip_sequences(output, lengths)
        return output, state

    def extra_repr(self) -> str:
        return "reverse=True" if self.reverse else ""


def reference_layer(
    cells: Sequence[RecurrentCell],
    params: Sequence[dict[str, Tensor]],
    x: Tensor,
    states: Sequence[State],
    lengths: Tensor | None,
) -> tuple[Tensor, list[State]]:
    r"""One layer on the reference path: :class:`Recurrent`'s loop per direction, concatenated.

    The layer kernel beside :func:`~rnnkit.layers.fast.own_layer` and
    :func:`~rnnkit.layers.fast.native_layer` (same signature, see
    :data:`~rnnkit.layers.fast.LayerKernel`). Direction d's cell ``cells[d]`` runs on the
    weights ``params[d]`` (by cell name: ``weight_ih``, ``weight_hh``, ...) in place of its own,
    so the cells may hold no memory (``RNN`` keeps them on the meta device). The cell module
    itself is called at every step, so forward hooks on it observe each step's input,
    previous state and new state (the diagnostics do).
    """
    outputs, finals = [], []
    for reverse, (cell, p, state) in enumerate(zip(cells, params, states)):
        loop = Recurrent(cell, reverse=bool(reverse))
        weights = {f"cell.{name}": t for name, t in p.items()}  # the cell is the loop's `cell`
        y, final = functional_call(loop, weights, (x, state, lengths))
        outputs.append(y)
        finals.append(final)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)), finals
