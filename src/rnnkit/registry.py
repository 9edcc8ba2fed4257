"""Cell names (``"elman"``, ``"irnn"``, ``"gru"``, ``"lstm"``, ``"lnlstm"``, ``"mingru"``, ``"minlstm"``,
``"slstm"``: :data:`rnnkit.names.CELLS`) and :func:`rnn`."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from rnnkit.cells import (
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    RecurrentCell,
    SLSTMCell,
    irnn_cell,
)
from rnnkit.errors import RnnkitError
from rnnkit.layers.rnn import RNN

CELLS: dict[str, Callable[..., RecurrentCell]] = {
    "elman": ElmanCell,
    "irnn": irnn_cell,
    "gru": GRUCell,
    "lstm": LSTMCell,
    "lnlstm": LayerNormLSTMCell,
    "mingru": MinGRUCell,
    "minlstm": MinLSTMCell,
    "slstm": SLSTMCell,
}
"""Each name of :data:`rnnkit.names.CELLS`, in its order, and the cell it builds."""
_BUILDER_ARGS = {"input_size", "hidden_size", "device", "dtype"}


def cell_options(cell: str) -> list[str]:
    """The keyword options a cell name accepts (e.g. ``nonlinearity`` for ``"elman"``)."""
    params = inspect.signature(CELLS[cell]).parameters
    return [name for name in params if name not in _BUILDER_ARGS]


def rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    impl: str = "auto",
    locked_dropout: bool = False,
    weight_drop: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **options,
) -> RNN:
    """Build a (deep, bidirectional) recurrent network of the named cell.

    Args:
        cell: ``"elman"``, ``"irnn"``, ``"gru"``, ``"lstm"``, ``"lnlstm"``, ``"mingru"``,
            ``"minlstm"`` or ``"slstm"``.
        input_size, hidden_size, num_layers, bidirectional, dropout: as in ``nn.LSTM``.
        impl: ``"auto"`` (fast path), ``"reference"``, ``"own"`` or ``"native"``.
        locked_dropout: share each dropout mask between layers over time (variational).
        weight_drop: DropConnect probability on every W_hh in training (AWD-LSTM).
        device, dtype: where and in what precision the parameters live.
        **options: the cell's own options, torch's names where torch has them:
            ``nonlinearity`` (``"sigmoid"|"tanh"|"relu"``, elman), ``bias``,
            ``reset_after`` (gru), ``forget_bias`` (lstm), ``scale`` and
            ``input_std`` (irnn), ``candidate`` (``"g"|"linear"``, mingru and minlstm),
            ``forget`` (``"sigmoid"|"exp"``, slstm),
            ``learn_initial_state`` (all).

    Returns:
        An :class:`~rnnkit.layers.RNN` whose ``forward(input, state=None, lengths=None)``
        takes time-major ``(L, N, H_in)`` and returns ``(output, final_state)`` shaped
        like torch's.

    Example::

        >>> lstm = rnnkit.rnn("lstm", 32, 64, num_layers=2, bidirectional=True)
        >>> out, (h, c) = lstm(torch.randn(7, 3, 32), lengths=[7, 5, 2])
    """
    if cell not in CELLS:
        raise RnnkitError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    allowed = cell_options(cell)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise RnnkitError(f"unknown option {unknown[0]!r} for cell {cell!r}; it accepts {allowed}")
    factory = CELLS[cell]

    def make_cell(layer_input: int) -> RecurrentCell:
        return factory(layer_input, hidden_size, device=device, dtype=dtype, **options)

    return RNN(
        make_cell,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        dropout,
        impl,
        locked_dropout=locked_dropout,
        weight_drop=weight_drop,
    )
