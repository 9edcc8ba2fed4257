"""The cell protocol shared by every recurrence: parameters, state type, initial state."""

from __future__ import annotations

import math
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from rnnkit.errors import RnnkitError


class LSTMState(NamedTuple):
    """State of an LSTM: hidden vector ``h`` and memory cell ``c``.

    A ``NamedTuple``, so ``h, c = state`` works as with torch's ``(h, c)`` tuples.
    """

    h: Tensor
    c: Tensor


class SLSTMState(NamedTuple):
    """State of an sLSTM (Beck et al. 2024): hidden ``h``, cell ``c``, normaliser ``n`` and
    stabiliser ``m`` (the running log-space maximum that keeps the exponential gates finite)."""

    h: Tensor
    c: Tensor
    n: Tensor
    m: Tensor


State = Tensor | LSTMState | SLSTMState
"""A cell's state: one tensor ``h`` (Elman, GRU), or a named tuple of tensors whose first field
is ``h``: :class:`LSTMState` ``(h, c)``, :class:`SLSTMState` ``(h, c, n, m)``."""


def map_state(state, fn):
    """``fn`` applied to every tensor of ``state`` (a tensor, or any nesting of tuples/lists,
    named tuples such as :class:`LSTMState` included), the nesting kept."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(s, fn) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(s, fn) for s in state)
    raise TypeError(f"a state must be a tensor or a tuple/list of them, got {type(state)!r}")


S = TypeVar("S")
"""Any state: a tensor, an :class:`LSTMState`, or a nesting of tuples/lists of them."""


def detach_state(state: S) -> S:
    """Cut the autograd graph behind ``state`` (a tensor, or any nesting of tuples/lists).

    Truncated BPTT calls this at every window boundary, whatever the cell.
    """
    return map_state(state, Tensor.detach)


def hidden_of(state: State) -> Tensor:
    """The hidden vector ``h_t`` of a state: what a layer emits as its output at step t."""
    return state if isinstance(state, Tensor) else state.h


def state_kind(cell: RecurrentCell) -> type | None:
    """The named tuple ``cell``'s state is (``cell.state_type``; :class:`LSTMState` for any
    cell with ``has_cell_state`` that names none), or None for a state that is one tensor h."""
    if cell.state_type is not None:
        return cell.state_type
    return LSTMState if cell.has_cell_state else None


def initial_state(
    batch_size: int,
    like: Tensor,
    h_0: Tensor | None,
    c_0: Tensor | None,
    has_cell_state: bool,
    hidden_size: int | None = None,
    kind: type | None = None,
) -> State:
    """Zeros shaped (N, H) in ``like``'s dtype and device, or the learned vectors ``h_0``/``c_0``
    expanded. H is ``hidden_size``, or ``like.shape[1]`` when ``like`` is a W_hh. ``kind`` is
    the state's named tuple (default :class:`LSTMState` with ``has_cell_state``); its fields
    after h and c (an sLSTM's n and m) start at zero."""
    H = like.shape[1] if hidden_size is None else hidden_size
    h = like.new_zeros(batch_size, H) if h_0 is None else h_0.expand(batch_size, H)
    kind = kind if kind is not None else (LSTMState if has_cell_state else None)
    if kind is None:
        return h
    c = like.new_zeros(batch_size, H) if c_0 is None else c_0.expand(batch_size, H)
    rest = [like.new_zeros(batch_size, H) for _ in kind._fields[2:]]
    return kind(h, c, *rest)


class RecurrentCell(nn.Module):
    """Base of all cells: torch-named parameters for ``gates`` stacked blocks.

    Parameters are named as torch's ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell`` name
    them (``weight_ih`` of shape ``(gates*H, H_in)``, ``weight_hh`` of shape
    ``(gates*H, H)``, ``bias_ih``, ``bias_hh``), so a cell's ``state_dict`` loads into
    the matching torch cell and back. With ``learn_initial_state`` the cell also owns
    ``h_0`` (and, for the LSTM, ``c_0``), each of shape ``(H,)``: the lecture's "h_0 is
    some initialization vector", learned; otherwise the initial state is zeros.

    Subclasses set ``gates``, and ``has_cell_state`` (the state is an :class:`LSTMState`, its
    c_0 learned too) or ``state_type`` (another named tuple whose fields start h, c, such as
    :class:`SLSTMState`; the layers carry, mask and stack every field) and write ``forward(x_t, state)``
    as the lecture's equations. A cell whose gates read only the input (minGRU, minLSTM)
    sets ``recurrent_weights = False``: it then has no ``weight_hh``/``bias_hh`` at all
    rather than an unused or empty one, so its ``state_dict``, parameter count, optimizer
    and every W_hh observer (weight drop, the gradient-flow bounds) see what it really has.
    """

    gates: int = 1
    has_cell_state: bool = False
    state_type: type | None = None
    """The state's named tuple where it is not one tensor h nor an LSTMState (see :func:`state_kind`)."""
    recurrent_weights: bool = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RnnkitError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bool(bias)
        self.learn_initial_state = bool(learn_initial_state)
        kw = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size, **kw))
        if self.recurrent_weights:
            self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size, **kw))
        biases = ("bias_ih", "bias_hh") if self.recurrent_weights else ("bias_ih",)
        for name in biases:
            self.register_parameter(name, nn.Parameter(torch.empty(rows, **kw)) if self.bias else None)
        if self.learn_initial_state:
            self.h_0 = nn.Parameter(torch.zeros(hidden_size, **kw))
            if self.has_cell_state:
                self.c_0 = nn.Parameter(torch.zeros(hidden_size, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)); h_0 = 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name in ("h_0", "c_0"):
                    p.zero_()
                else:
                    p.uniform_(-bound, bound)

    def initial_state(self, batch_size: int) -> State:
        """The state before the first step: zeros, or the learned ``h_0`` (and ``c_0``)."""
        return initial_state(
            batch_size,
            self.weight_ih,
            getattr(self, "h_0", None),
            getattr(self, "c_0", None),
            self.has_cell_state,
            self.hidden_size,
            state_kind(self),
        )

    def extra_repr(self) -> str:
        extra = "" if self.bias else ", bias=False"
        if self.learn_initial_state:
            extra += ", learn_initial_state=True"
        return f"{self.input_size}, {self.hidden_size}{extra}"
