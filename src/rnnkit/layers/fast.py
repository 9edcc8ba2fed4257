"""The fast path: per (device, cell, dtype, lengths), the fastest implementation measured.

A *layer kernel* runs one layer (every direction) over a whole sequence; ``RNN`` binds it to
the layer's cells and weights. The reference kernel is
:func:`rnnkit.layers.recurrent.reference_layer` (the cells' own loop); two fast ones live here:

* ``native``: torch's own fused recurrent ops (``torch.lstm``/``gru``/``rnn_tanh``/
  ``rnn_relu``, what ``nn.LSTM`` & co. call): cuDNN on GPUs, oneDNN for fp32 LSTM on
  CPUs. Variable lengths go through a ``PackedSequence``.
* ``own``: :mod:`rnnkit.layers.kernels`: one GEMM for all input projections and a
  single backward sweep; covers every cell, option, dtype and device. For the min cells
  (no W_hh) it is :mod:`rnnkit.layers.scan` (an in-place loop on CPUs, the log-space
  parallel scan elsewhere); for the LayerNorm LSTM :mod:`rnnkit.layers.lnlstm`; for the
  sLSTM :mod:`rnnkit.layers.slstm`.

:func:`choose` is the table of which wins; ``bench/cells.py`` measures it (see
``bench/RESULTS.md``). Both are proven equal to the reference path by the parity tests.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import LSTMState, RecurrentCell, State, hidden_of, map_state
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lnlstm import LayerNormLSTMCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.mingru import MinGRUCell
from rnnkit.cells.minlstm import MinLSTMCell
from rnnkit.cells.slstm import SLSTMCell
from rnnkit.layers.kernels import ElmanRecurrence, GRURecurrence, LSTMRecurrence
from rnnkit.layers.lnlstm import lnlstm_direction
from rnnkit.layers.scan import scan_direction
from rnnkit.layers.slstm import slstm_direction
from rnnkit.layers.state import flip_sequences, step_mask

LayerParams = dict[str, Tensor]
"""One direction's parameters by cell name: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

LayerKernel = Callable[
    [Sequence[RecurrentCell], Sequence[LayerParams], Tensor, Sequence[State], Tensor | None],
    tuple[Tensor, list[State]],
]
"""``kernel(cells, params, x, states, lengths) -> (output, finals)``: one layer, one entry of
``cells``/``params``/``states``/``finals`` per direction (forward, then backward); ``output`` is
(L, N, D*H), zero at padded steps."""


def native_op(cell: RecurrentCell) -> Callable | None:
    """torch's fused op computing ``cell``'s recurrence, or None where torch has none."""
    if isinstance(cell, LSTMCell):
        return torch.lstm
    if isinstance(cell, GRUCell):
        return torch.gru if cell.reset_after else None
    if isinstance(cell, ElmanCell):  # sigmoid: a tanh network on rescaled weights (sigmoid_as_tanh)
        return torch.rnn_relu if cell.nonlinearity == "relu" else torch.rnn_tanh
    return None


def _is_sigmoid(cell: RecurrentCell) -> bool:
    return isinstance(cell, ElmanCell) and cell.nonlinearity == "sigmoid"


def sigmoid_as_tanh(
    weights: Sequence[Tensor], h0: Tensor, num_layers: int, num_directions: int, bias: bool
) -> tuple[list[Tensor], Tensor]:
    r"""Rewrite a sigmoid Elman network as a tanh one: the same function, on cuDNN.

    :math:`\sigma(a) = (1 + \tanh(a/2))/2`, so with :math:`h = (1 + g)/2` each layer's
    :math:`g_t = \tanh(a_t/2)` is a tanh RNN:

    .. math::
        a_t/2 = \tfrac{1}{2} W_{ih} x_t + \tfrac{1}{4} W_{hh} g_{t-1}
              + \tfrac{1}{2}(b_{ih} + b_{hh}) + \tfrac{1}{4} W_{hh}\mathbf{1}

    and a layer fed by the g of the layer below (whose h is (1 + g)/2) takes
    :math:`\tfrac{1}{4} W_{ih}` and adds :math:`\tfrac{1}{4} W_{ih}\mathbf{1}` to its bias.
    Scaling by powers of two is exact; gradients flow through these maps by autograd.
    Returns the tanh network's weights (always with biases) and its initial state 2 h_0 - 1.
    """
    per = 4 if bias else 2
    out = []
    for i in range(num_layers * num_directions):
        w_ih, w_hh = weights[i * per], weights[i * per + 1]
        fed_by_g = i >= num_directions  # layer > 0 in a whole-stack call
        b_ih = w_hh.sum(1) / 4 + (w_ih.sum(1) / 4 if fed_by_g else 0)
        b_hh = weights[i * per + 3] / 2 if bias else torch.zeros_like(b_ih)
        if bias:
            b_ih = b_ih + weights[i * per + 2] / 2
        out += [w_ih / (4 if fed_by_g else 2), w_hh / 4, b_ih, b_hh]
    return out, 2 * h0 - 1


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
    sigmoid, has_biases = _is_sigmoid(cell), cell.bias
    if sigmoid:
        weights, hx[0] = sigmoid_as_tanh(weights, hx[0], num_layers, 2 if bidirectional else 1, cell.bias)
        has_biases = True
    # `train` only decides whether cuDNN keeps what its backward needs (dropout is 0):
    # it must follow autograd, not the module's mode, or a gradient taken in eval mode
    # (the diagnostics take them) fails on GPUs.
    train = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *weights, *hx))
    args = (has_biases, num_layers, 0.0, train, bidirectional)
    with warnings.catch_warnings():
        # RNN.flatten_parameters lays out a module's own weights; derived ones (the sigmoid's
        # rescaled weights, a weight-dropped W_hh) are new tensors cuDNN must pack, as it does.
        warnings.filterwarnings("ignore", message="RNN module weights are not part")
        if lengths is None:
            out = op(x, hx if cell.has_cell_state else hx[0], weights, *args, False)
            y, finals = out[0], list(out[1:])
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
            hx = [h.index_select(1, packed.sorted_indices) for h in hx]
            out = op(packed.data, packed.batch_sizes, hx if cell.has_cell_state else hx[0], weights, *args)
            y = pad_packed_sequence(
                PackedSequence(out[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
                total_length=x.shape[0],
            )[0]
            finals = [h.index_select(1, packed.unsorted_indices) for h in out[1:]]
    if sigmoid:  # h = (1 + g) / 2, and zero at padding as on every path
        y, finals[0] = (1 + y) / 2, (1 + finals[0]) / 2
        if lengths is not None:
            y = y.masked_fill(~step_mask(lengths, x.shape[0]), 0.0)
    return y, (LSTMState(*finals) if cell.has_cell_state else finals[0])


def native_weights(params: Sequence[LayerParams]) -> list[Tensor]:
    """The weights of layer-directions ``params`` in torch's order for its fused ops:
    per layer-direction ``w_ih, w_hh[, b_ih, b_hh]`` (a learned h_0 is not a weight)."""
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [p[name] for p in params for name in names if name in p]


def native_layer(
    cells: Sequence[RecurrentCell],
    params: Sequence[LayerParams],
    x: Tensor,
    states: Sequence[State],
    lengths: Tensor | None,
) -> tuple[Tensor, list[State]]:
    """One layer (every direction) through torch's fused op."""
    cell = cells[0]
    h = torch.stack([hidden_of(s) for s in states])
    hx = (h, torch.stack([s.c for s in states])) if cell.has_cell_state else h
    y, final = native_stack(cell, x, hx, native_weights(params), lengths, 1, len(params) == 2)
    if cell.has_cell_state:
        return y, [LSTMState(h, c) for h, c in zip(final.h, final.c)]
    return y, list(final)


_CUDNN_MODES = {torch.lstm: "LSTM", torch.gru: "GRU", torch.rnn_tanh: "RNN_TANH", torch.rnn_relu: "RNN_RELU"}


def cudnn_mode(cell: RecurrentCell) -> str | None:
    """cuDNN's name for ``cell``'s recurrence (for flattening weights), or None."""
    op = None if _is_sigmoid(cell) else native_op(cell)
    return _CUDNN_MODES.get(op)


def own_layer(
    cells: Sequence[RecurrentCell],
    params: Sequence[LayerParams],
    x: Tensor,
    states: Sequence[State],
    lengths: Tensor | None,
) -> tuple[Tensor, list[State]]:
    """One layer through rnnkit's kernels, one direction after the other.

    Under autocast the layer runs in its parameters' dtype (fp32) with autocast off: the
    kernels write into preallocated tensors, which autocast cannot re-type.
    """
    if torch.is_autocast_enabled(x.device.type):
        dtype = params[0]["weight_ih"].dtype
        with torch.autocast(x.device.type, enabled=False):
            states = [map_state(s, lambda t: t.to(dtype)) for s in states]
            return own_layer(cells, params, x.to(dtype), states, lengths)
    mask = None if lengths is None else step_mask(lengths, x.shape[0])
    outputs, finals = [], []
    for reverse, (cell, state, p) in enumerate(zip(cells, states, params)):
        xd = flip_sequences(x, lengths) if reverse else x
        y, final = _own_kernel(cell)(cell, xd, state, p, mask)
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


_OWN = {
    ElmanCell: _own_elman,
    GRUCell: _own_gru,
    LSTMCell: _own_lstm,
    LayerNormLSTMCell: lnlstm_direction,
    MinGRUCell: scan_direction,
    MinLSTMCell: scan_direction,
    SLSTMCell: slstm_direction,
}


def _own_kernel(cell: RecurrentCell) -> Callable:
    for cls in type(cell).__mro__:  # a subclass of a cell runs its parent's kernel
        if cls in _OWN:
            return _OWN[cls]
    raise TypeError(f"no rnnkit kernel for {type(cell).__name__}; use impl='reference'")


def choose(
    cell: RecurrentCell,
    device: torch.device,
    dtype: torch.dtype,
    has_lengths: bool,
    bidirectional: bool = False,
) -> LayerKernel:
    """The kernel that wins for this case, as measured by ``bench/cells.py``.

    * CUDA: cuDNN wherever torch has the cell (LSTM, GRU with ``reset_after``, tanh/relu
      Elman, and the sigmoid Elman rewritten as a tanh one), packed for variable
      lengths; our kernels for Cho's GRU.
    * CPU: torch's fused op for the fp32 LSTM without lengths (oneDNN), and for the
      bidirectional fp32 LSTM with lengths (packed: 1.23x our kernels in training and
      1.42x in prediction for the EWT tagger's 2x200 on ``bench/tagger_speed.py``'s
      batches, measured 2026-11-28 under load, see bench/RESULTS.md); every other CPU
      case (GRU, Elman, fp64, one
      direction with lengths) steps through ordinary ops in torch, where our kernels are
      faster.
    * minGRU / minLSTM (torch has no fused op): :func:`rnnkit.layers.scan.scan_direction`,
      the in-place loop on CPUs and the log-space parallel scan elsewhere
      (:func:`~rnnkit.layers.scan.best_method`).
    * the LayerNorm LSTM: every step's LN(θ_x x_t) at once, then the loop over h; layers
      of 400 units or more train through our kernel with a hand-written backward
      (:mod:`rnnkit.layers.lnlstm`).
    * the sLSTM: every step's W x_t + b at once, then the loop over h
      (:mod:`rnnkit.layers.slstm`).
    """
    if native_op(cell) is not None:
        if device.type == "cuda":
            return native_layer
        if (
            device.type == "cpu"
            and isinstance(cell, LSTMCell)
            and dtype == torch.float32
            and (not has_lengths or bidirectional)
        ):
            return native_layer
    return own_layer
