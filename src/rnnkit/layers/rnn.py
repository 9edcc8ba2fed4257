"""The recurrent network module: flat torch-named parameters, one layer loop over a chosen kernel."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn

from rnnkit.cells.base import LSTMState, RecurrentCell, State, initial_state, map_state, state_kind
from rnnkit.errors import RnnkitError
from rnnkit.layers import fast
from rnnkit.layers.dropout import drop_weight
from rnnkit.layers.recurrent import reference_layer
from rnnkit.layers.stacked import stack_layers
from rnnkit.layers.state import check_lengths

IMPLS = ("auto", "reference", "own", "native")


class RNN(nn.Module):
    r"""A deep, optionally bidirectional recurrent network of any cell.

    Layer k runs its cell over the whole sequence (both ways if bidirectional,
    :math:`h_t = [\overrightarrow{h}_t; \overleftarrow{h}_t]`) and passes the output
    sequence, after dropout, to layer k+1. Build it with :func:`rnnkit.rnn`.

    Args:
        make_cell: builds one cell given its input size (called once per layer and
            direction; it initialises the weights).
        input_size: size of x_t.
        hidden_size: size of each direction's h_t.
        num_layers: depth.
        bidirectional: add a reversed direction to every layer.
        dropout: dropout between layers in training mode.
        locked_dropout: use one dropout mask per sequence between layers, the same at
            every step (variational dropout, Gal & Ghahramani 2016) instead of a fresh
            mask per element.
        weight_drop: DropConnect on every :math:`W_{hh}` in training mode: a fresh mask
            per forward call, shared by all steps (AWD-LSTM, Merity et al. 2018). Works
            on every path, the fused kernels included.
        impl: ``"auto"`` (the fast path: the fastest measured kernel per device, cell,
            dtype and lengths), ``"reference"`` (the Python loop over the cells),
            ``"own"`` (rnnkit's kernels) or ``"native"`` (torch's fused op). Settable
            later through the ``impl`` attribute.

    Inputs: ``input, state=None, lengths=None``
        * **input** (L, N, H_in), time-major.
        * **state** (D*num_layers, N, H) with D = 2 if bidirectional else 1, or for
          the LSTM a pair ``(h_0, c_0)`` of such tensors (for the sLSTM a tuple
          ``(h_0, c_0, n_0, m_0)``); ``None`` starts from zeros (or from the learned
          initial state).
        * **lengths** (N,) integers in [1, L]: sequence n's real tokens are its first
          ``lengths[n]`` steps. Padding never changes outputs at real steps nor the
          final states; outputs at padded steps are zero.

    Outputs: ``output, final_state``
        * **output** (L, N, D*H): the last layer's h_t at every step.
        * **final_state** shaped like ``state``: each layer and direction's state
          after its last real token (an :class:`~rnnkit.cells.LSTMState` for the LSTM,
          an :class:`~rnnkit.cells.SLSTMState` for the sLSTM).

    .. note::
        Parameters are named as torch names them (``weight_ih_l0``,
        ``weight_hh_l1_reverse``, ``bias_ih_l0``, ...) in torch's gate order, so
        ``load_state_dict`` to and from the matching ``nn.RNN``/``nn.GRU``/``nn.LSTM``
        works with ``strict=True``. A learned initial state is stored as ``h_0_l{k}``
        (and ``c_0_l{k}``), with ``_reverse`` for the backward direction.
    """

    def __init__(
        self,
        make_cell: Callable[[int], RecurrentCell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        impl: str = "auto",
        locked_dropout: bool = False,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RnnkitError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("dropout", dropout), ("weight_drop", weight_drop)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise RnnkitError(f"{name} must be a probability in [0, 1), got {value!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout = bool(bidirectional), float(dropout)
        self.locked_dropout, self.weight_drop = bool(locked_dropout), float(weight_drop)
        self.impl = impl
        self.num_directions = 2 if bidirectional else 1
        # Cells on the meta device: they hold each direction's options and code but no
        # memory; the reference kernel runs them on this module's parameters.
        self._cells: list[RecurrentCell] = []
        self._names: list[dict[str, str]] = []  # per (layer, direction): cell name -> torch's name
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[: self.num_directions]:
                cell = make_cell(self._layer_input(layer))
                names = {}
                for name, p in cell.named_parameters():
                    names[name] = f"{name}_l{layer}{suffix}"
                    self.register_parameter(names[name], p)
                self._cells.append(copy.deepcopy(cell).to("meta"))
                self._names.append(names)
        if self.weight_drop and not self.cell.recurrent_weights:
            raise RnnkitError(
                f"weight_drop drops entries of W_hh, and {type(self.cell).__name__} has none "
                "(its gates read only x_t); set weight_drop = 0"
            )
        self._flat_ptrs: list[int] = []
        self.flatten_parameters()

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLS:
            raise RnnkitError(f"impl must be one of {list(IMPLS)}, got {value!r}")
        self._impl = value

    @property
    def cell(self) -> RecurrentCell:
        """The first layer's forward cell (on the meta device): its type and options."""
        return self._cells[0]

    @property
    def cells(self) -> tuple[RecurrentCell, ...]:
        """Every layer-direction's cell (on the meta device), index = layer * D + direction.

        The reference kernel calls these modules at every step, so forward hooks on them
        observe each step's input, previous state and new state (the diagnostics do)."""
        return tuple(self._cells)

    def layer_parameters(self, index: int) -> dict[str, Tensor]:
        """Parameters of layer-direction ``index`` (= layer * D + direction) by cell name."""
        return {name: getattr(self, flat) for name, flat in self._names[index].items()}

    def standalone_cell(self, index: int) -> RecurrentCell:
        """A working copy of layer-direction ``index``'s cell holding copies of its weights."""
        params = self.layer_parameters(index)
        ref = next(iter(params.values()))
        cell = copy.deepcopy(self._cells[index]).to_empty(device=ref.device).to(ref.dtype)
        cell.load_state_dict({name: p.detach() for name, p in params.items()})
        return cell

    def forward(
        self,
        input: Tensor,
        state: Tensor | tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor | LSTMState]:
        # Pick the layer kernel (reference, own or native), bind it to each layer's cells and
        # weights, run the layers with dropout between them; or, where nothing happens between
        # layers, run the whole stack as one native call.
        state, lengths = self._check(input, state, lengths)
        weights = self._forward_weights()
        kernel = self._kernel(input.device, input.dtype, lengths is not None)
        if kernel is fast.native_layer and (self.dropout == 0.0 or not self.training):
            # Nothing happens between layers (no dropout, or not training): one fused call
            # runs the whole stack.
            return self._native_stack(input, state, weights, lengths)
        N, D = input.shape[1], self.num_directions
        states = self._initial_states(weights, N) if state is None else self._split_state(state)
        layers = [
            partial(kernel, self._cells[k * D : (k + 1) * D], weights[k * D : (k + 1) * D])
            for k in range(self.num_layers)
        ]
        layer_states = [states[k * D : (k + 1) * D] for k in range(self.num_layers)]
        output, finals = stack_layers(
            layers, input, layer_states, lengths, self.dropout, self.training, self.locked_dropout
        )
        return output, self._join_state([s for layer in finals for s in layer])

    def _kernel(self, device: torch.device, dtype: torch.dtype, has_lengths: bool) -> fast.LayerKernel:
        """The layer kernel ``impl`` names; for ``"auto"`` the fastest measured (``fast.choose``)."""
        if self.impl == "reference":
            return reference_layer
        if self.impl == "own":
            return fast.own_layer
        if self.impl == "native":
            if fast.native_op(self.cell) is None:
                raise RnnkitError(f"impl='native': torch has no fused op for {self.cell!r}")
            return fast.native_layer
        return fast.choose(self.cell, device, dtype, has_lengths, self.bidirectional)

    def _forward_weights(self) -> list[dict[str, Tensor]]:
        """The weights this forward call uses, per layer-direction by cell name: the
        parameters, with W_hh dropped in training.

        Every kernel runs on these, so a seeded run draws the same masks on every path.
        """
        weights = [self.layer_parameters(i) for i in range(len(self._names))]
        if self.training and self.weight_drop:
            for p in weights:
                p["weight_hh"] = drop_weight(p["weight_hh"], self.weight_drop, True)
        return weights

    def _native_stack(
        self,
        input: Tensor,
        state: Tensor | LSTMState | None,
        weights: list[dict[str, Tensor]],
        lengths: Tensor | None,
    ) -> tuple[Tensor, Tensor | LSTMState]:
        """The whole stack as one call of torch's fused op (no dropout between layers)."""
        flat = fast.native_weights(weights)
        dropped = self.training and self.weight_drop  # new tensors each call: cuDNN packs them
        if input.is_cuda and not dropped and [w.data_ptr() for w in flat] != self._flat_ptrs:
            self.flatten_parameters()  # e.g. after deepcopy or load_state_dict(assign=True)
        if state is None and self.cell.learn_initial_state:
            state = self._join_state(self._initial_states(weights, input.shape[1]))
        elif state is None:  # zeros in torch's layout at once, not stacked from one per layer
            shape = (self.num_layers * self.num_directions, input.shape[1], self.hidden_size)
            h = weights[0]["weight_ih"].new_zeros(shape)
            state = LSTMState(h, torch.zeros_like(h)) if self.cell.has_cell_state else h
        return fast.native_stack(self.cell, input, state, flat, lengths, self.num_layers, self.bidirectional)

    def _initial_states(self, weights: list[dict[str, Tensor]], N: int) -> list[State]:
        """Every layer-direction's state before the first step: zeros, or the learned h_0 (c_0)."""
        lstm, kind = self.cell.has_cell_state, state_kind(self.cell)
        H = self.hidden_size
        return [initial_state(N, p["weight_ih"], p.get("h_0"), p.get("c_0"), lstm, H, kind) for p in weights]

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    def flatten_parameters(self) -> None:
        """On CUDA, lay the weights out as cuDNN wants them (as ``nn.LSTM`` does).

        One buffer for the whole stack when there is no dropout between layers (the stack
        runs as one cuDNN call); one buffer per layer otherwise (each layer is its own
        call). Without this cuDNN copies the weights into such a buffer at every call. A
        no-op on other devices, for cells cuDNN does not have, or where torch cannot do it.
        """
        mode = fast.cudnn_mode(self.cell)
        weights = fast.native_weights([self.layer_parameters(i) for i in range(len(self._names))])
        if mode is not None and weights[0].is_cuda and torch.backends.cudnn.is_acceptable(weights[0]):
            per_layer = len(weights) // self.num_layers
            groups = (
                [(weights, self.input_size, self.num_layers)]
                if self.dropout == 0.0
                else [
                    (weights[k * per_layer : (k + 1) * per_layer], self._layer_input(k), 1)
                    for k in range(self.num_layers)
                ]
            )
            try:
                with torch.no_grad():
                    for group, input_size, layers in groups:
                        torch._cudnn_rnn_flatten_weight(
                            group,
                            4 if self.cell.bias else 2,
                            input_size,
                            torch.backends.cudnn.rnn.get_cudnn_mode(mode),
                            self.hidden_size,
                            0,
                            layers,
                            False,
                            self.bidirectional,
                        )
            except (AttributeError, RuntimeError):  # private torch API: speed only, never correctness
                pass
        self._flat_ptrs = [w.data_ptr() for w in weights]

    def _layer_input(self, k: int) -> int:
        return self.input_size if k == 0 else self.hidden_size * self.num_directions

    def _check(self, input: Tensor, state, lengths) -> tuple[Tensor | LSTMState | None, Tensor | None]:
        """Validate the inputs; return the state (cast to the input's dtype under autocast,
        which hands states back in bf16) and the lengths as an int64 tensor."""
        self._check_input(input)
        L, N = input.shape[:2]
        if lengths is not None:
            lengths = check_lengths(lengths, L, N, input.device)
        if state is not None:
            autocast = torch.is_autocast_enabled(input.device.type)
            self._check_state(state, N, input, any_float=autocast)
            if autocast:
                state = map_state(state, lambda t: t.to(input.dtype))
        return state, lengths

    def _check_input(self, input: Tensor) -> None:
        if not isinstance(input, Tensor):
            raise RnnkitError(
                f"input must be a torch.Tensor of shape (L, N, {self.input_size}), got {type(input).__name__}"
            )
        if input.dim() != 3:
            raise RnnkitError(
                f"input must be 3-D, time-major (L, N, H_in={self.input_size}), "
                f"got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise RnnkitError(f"input feature size must be {self.input_size}, got shape {tuple(input.shape)}")
        if input.shape[0] == 0 or input.shape[1] == 0:
            raise RnnkitError(
                f"input must have at least one step and one sequence, got shape {tuple(input.shape)}"
            )
        ref = self.weight_ih_l0
        if input.dtype != ref.dtype or input.device != ref.device:
            raise RnnkitError(
                f"input is {input.dtype} on {input.device} but the parameters are {ref.dtype} on "
                f"{ref.device}; move one to the other with .to(...)"
            )

    def _check_state(self, state, N: int, input: Tensor, any_float: bool = False) -> None:
        """Shape, device and dtype of ``state`` (``any_float``: any floating dtype will do)."""
        expected = (self.num_layers * self.num_directions, N, self.hidden_size)
        kind = state_kind(self.cell)
        fields = ("state",) if kind is None else tuple(f"{f}_0" for f in kind._fields)
        if kind is not None and not (isinstance(state, (tuple, list)) and len(state) == len(fields)):
            what = (
                "a pair (h_0, c_0) for an LSTM"
                if len(fields) == 2
                else (f"a tuple ({', '.join(fields)}) for {type(self.cell).__name__}")
            )
            raise RnnkitError(f"state must be {what}, each of shape {expected}, got {type(state).__name__}")
        for name, t in zip(fields, state if kind is not None else (state,)):
            if not isinstance(t, Tensor) or tuple(t.shape) != expected:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise RnnkitError(f"{name} must have shape (D*num_layers, N, H) = {expected}, got {got}")
            dtype_ok = t.dtype == input.dtype or (any_float and t.is_floating_point())
            if not dtype_ok or t.device != input.device:
                raise RnnkitError(
                    f"{name} is {t.dtype} on {t.device}, "
                    f"expected {input.dtype} on {input.device} like the input"
                )

    def _split_state(self, state) -> list[State]:
        """torch's (D*num_layers, N, H) layout -> one state per (layer, direction)."""
        kind = state_kind(self.cell)
        if kind is None:
            return list(state.unbind(0))
        return [kind(*parts) for parts in zip(*(t.unbind(0) for t in state))]

    def _join_state(self, finals: list[State]) -> State:
        kind = state_kind(self.cell)
        if kind is None:
            return torch.stack(finals)
        return kind(*(torch.stack(parts) for parts in zip(*finals)))

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}", f"cell={type(self.cell).__name__}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            parts.append("bidirectional=True")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if self.locked_dropout:
            parts.append("locked_dropout=True")
        if self.weight_drop:
            parts.append(f"weight_drop={self.weight_drop}")
        if self.impl != "auto":
            parts.append(f"impl={self.impl!r}")
        return ", ".join(parts)
