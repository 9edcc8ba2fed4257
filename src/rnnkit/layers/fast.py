"""The fast path: per (device, cell, dtype, lengths), the fastest implementation measured.

Two implementations run one layer (both directions) over a whole sequence:

* ``native``: torch's own fused recurrent ops (``torch.lstm``/``gru``/``rnn_tanh``/
  ``rnn_relu``, what ``nn.LSTM`` & co. call): cuDNN on GPUs, oneDNN for fp32 LSTM on
  CPUs. Variable lengths go through a ``PackedSequence``.
* ``own``: :mod:`rnnkit.layers.kernels`: one GEMM for all input projections and a
  single backward sweep; covers every cell, option, dtype and device.

:func:`choose` is the table of which wins; ``bench/cells.py`` measures it (see
``bench/RESULTS.md``). Both are proven equal to the reference path by the parity tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import LSTMState, RecurrentCell, State, hidden_of
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.layers.kernels import ElmanRecurrence, GRURecurrence, LSTMRecurrence
from rnnkit.layers.state import flip_sequences, step_mask

LayerParams = dict[str, Tensor]
"""One direction's parameters by cell name: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

LayerKernel = Callable[[RecurrentCell, Tensor, Sequence[State], Sequence[LayerParams], Tensor | None], tuple[Tensor, list[State]]]


def native_op(cell: RecurrentCell) -> Callable | None:
    """torch's fused op computing ``cell``'s recurrence, or None where torch has none."""
    if isinstance(cell, LSTMCell):
        return torch.lstm
    if isinstance(cell, GRUCell):
        return torch.gru if cell.reset_after else None
    if isinstance(cell, ElmanCell):
        return {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu}.get(cell.nonlinearity)
    return None


def native_stack(
    cell: RecurrentCell,
    x: Tensor,
    hx: Tensor | tuple[Tensor, Tensor],
    weights: Sequence[Tensor],
    lengths: Tensor | None,
    num_layers: int,
    bidirectional: bool,
) -> tuple[Tensor, Tensor | LSTMState]:
    """Layers through torch's fused op (cuDNN / oneDNN where torch uses them).

    ``hx`` and the returned final state are in torch's layout (D*num_layers, N, H),
    ``weights`` in torch's order (per layer and direction: w_ih, w_hh[, b_ih, b_hh]).
    No dropout here: between layers it is the caller's (see ``RNN``).
    """
    op = native_op(cell)
    hx = list(hx) if cell.has_cell_state else [hx]
    # `train` only decides whether cuDNN keeps what its backward needs (dropout is 0):
    # it must follow autograd, not the module's mode, or a gradient taken in eval mode
    # (the diagnostics take them) fails on GPUs.
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights, *hx))
    args = (cell.bias, num_layers, 0.0, train, bidirectional)
    if lengths is None:
        out = op(x, hx if cell.has_cell_state else hx[0], weights, *args, False)
        y, finals = out[0], out[1:]
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        hx = [h.index_select(1, packed.sorted_indices) for h in hx]
        out = op(packed.data, packed.batch_sizes, hx if cell.has_cell_state else hx[0], weights, *args)
        y = pad_packed_sequence(
            PackedSequence(out[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
            total_length=x.shape[0],
        )[0]
        finals = [h.index_select(1, packed.unsorted_indices) for h in out[1:]]
    return y, (LSTMState(*finals) if cell.has_cell_state else finals[0])


def native_layer(
    cell: RecurrentCell, x: Tensor, states: Sequence[State], params: Sequence[LayerParams], lengths: Tensor | None
) -> tuple[Tensor, list[State]]:
    """One layer (both directions) through torch's fused op."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if cell.bias else ("weight_ih", "weight_hh")
    h = torch.stack([hidden_of(s) for s in states])
    hx = (h, torch.stack([s.c for s in states])) if cell.has_cell_state else h
    weights = [p[name] for p in params for name in names]
    y, final = native_stack(cell, x, hx, weights, lengths, 1, len(params) == 2)
    if cell.has_cell_state:
        return y, [LSTMState(h, c) for h, c in zip(final.h, final.c)]
    return y, list(final)


def cudnn_mode(cell: RecurrentCell) -> str | None:
    """cuDNN's name for ``cell``'s recurrence (for flattening weights), or None."""
    op = native_op(cell)
    return {torch.lstm: "LSTM", torch.gru: "GRU", torch.rnn_tanh: "RNN_TANH", torch.rnn_relu: "RNN_RELU"}.get(op)


def own_layer(
    cell: RecurrentCell, x: Tensor, states: Sequence[State], params: Sequence[LayerParams], lengths: Tensor | None
) -> tuple[Tensor, list[State]]:
    """One layer through rnnkit's kernels, one direction after the other."""
    mask = None if lengths is None else step_mask(lengths, x.shape[0])
    outputs, finals = [], []
    for reverse, (state, p) in enumerate(zip(states, params)):
        xd = flip_sequences(x, lengths) if reverse else x
        y, final = _OWN[type(cell)](cell, xd, state, p, mask)
        outputs.append(flip_sequences(y, lengths) if reverse else y)
        finals.append(final)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)), finals


def _bias_sum(p: LayerParams) -> Tensor | None:
    return p["bias_ih"] + p["bias_hh"] if "bias_ih" in p else None


def _own_elman(cell: ElmanCell, x: Tensor, h0: Tensor, p: LayerParams, mask: Tensor | None):
    xp = F.linear(x, p["weight_ih"], _bias_sum(p))
    return ElmanRecurrence.apply(xp, h0, p["weight_hh"], mask, cell.nonlinearity)


def _own_gru(cell: GRUCell, x: Tensor, h0: Tensor, p: LayerParams, mask: Tensor | None):
    xp = F.linear(x, p["weight_ih"], p.get("bias_ih"))
    return GRURecurrence.apply(xp, h0, p["weight_hh"], p.get("bias_hh"), mask, cell.reset_after)


def _own_lstm(cell: LSTMCell, x: Tensor, state: LSTMState, p: LayerParams, mask: Tensor | None):
    xp = F.linear(x, p["weight_ih"], _bias_sum(p))
    y, h, c = LSTMRecurrence.apply(xp, state.h, state.c, p["weight_hh"], mask)
    return y, LSTMState(h, c)


_OWN = {ElmanCell: _own_elman, GRUCell: _own_gru, LSTMCell: _own_lstm}


def choose(cell: RecurrentCell, device: torch.device, dtype: torch.dtype, has_lengths: bool) -> LayerKernel:
    """The kernel that wins for this case, as measured by ``bench/cells.py``.

    * CUDA: cuDNN wherever torch has the cell (LSTM, GRU with ``reset_after``, tanh/relu
      Elman), packed for variable lengths; our kernels for the sigmoid Elman and Cho's GRU.
    * CPU: oneDNN only for the fp32 LSTM without lengths; every other CPU case (GRU,
      Elman, fp64, packed input) steps through ordinary ops in torch, where our
      kernels are faster.
    """
    if native_op(cell) is not None:
        if device.type == "cuda":
            return native_layer
        if device.type == "cpu" and isinstance(cell, LSTMCell) and dtype == torch.float32 and not has_lengths:
            return native_layer
    return own_layer
