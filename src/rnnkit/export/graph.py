"""ONNX graph pieces for rnnkit's modules: a recurrent stack, embeddings, heads, masks.

Each function adds nodes to a :class:`Graph` and returns the names of the values it made, so
a model's graph reads as its ``forward`` does. Recurrent layers become ONNX's own ``RNN``,
``GRU`` and ``LSTM`` operators, which compute every rnnkit cell exactly (see :data:`NATIVE`);
the weights are copied from the module's flat torch-named parameters into ONNX's gate order.
Everything here is float32.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell, RecurrentCell
from rnnkit.errors import RnnkitError
from rnnkit.layers.rnn import RNN
from rnnkit.models.heads import AdaptiveSoftmax, FullSoftmax, OutputHead


@dataclass(frozen=True)
class NativeOp:
    """How one cell maps onto an ONNX recurrent operator.

    ``order`` lists torch's gate blocks in ONNX's order: torch stacks the LSTM's gates
    i|f|g|o and ONNX i|o|f|c; torch's GRU r|z|n and ONNX's z|r|h.
    """

    op: str
    order: tuple[int, ...]


NATIVE: dict[type[RecurrentCell], NativeOp] = {
    ElmanCell: NativeOp("RNN", (0,)),
    GRUCell: NativeOp("GRU", (1, 0, 2)),
    LSTMCell: NativeOp("LSTM", (0, 3, 1, 2)),
}
"""Every cell and the ONNX operator that computes it exactly. ONNX's ``RNN`` takes the Elman
cell's f as its activation (``Sigmoid``, ``Tanh``, ``Relu``; IRNN is the ReLU Elman cell);
``GRU``'s ``linear_before_reset=1`` is rnnkit's default ``reset_after=True``
(r_t ∘ (U h + b_hn)) and ``=0`` Cho et al.'s original (U (r_t ∘ h) + b_hn), with the hidden
bias outside the reset as rnnkit's cell has it; ``LSTM`` without peepholes is the
lecture's LSTM."""

_ACTIVATION = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _array(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


class Graph:
    """Nodes and initializers of one ONNX graph under construction, with fresh value names."""

    def __init__(self, outer: Graph | None = None) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        if outer is None:
            self.initializers: list[Any] = []
            self._ids = itertools.count()
            self._consts: dict[tuple[str, bytes, tuple[int, ...]] | None, str] = {}
        else:  # a subgraph (a Scan's body): its own nodes; names and constants of the outer graph
            self.initializers, self._ids, self._consts = outer.initializers, outer._ids, outer._consts

    def body(self) -> Graph:
        """A subgraph's builder: its nodes apart, its constants the outer graph's initializers."""
        return Graph(self)

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._ids)}"

    def const(self, value: np.ndarray | Tensor | list[Any] | float | int, hint: str = "c") -> str:
        """An initializer holding ``value`` (a tensor or array as float32; Python ints int64)."""
        if isinstance(value, Tensor):
            array = _array(value)
        elif isinstance(value, np.ndarray):
            array = value
        else:
            array = np.asarray(value, dtype=np.int64 if _all_ints(value) else np.float32)
        key = None if array.size > 16 else (str(array.dtype), array.tobytes(), array.shape)
        if key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        if key is not None:  # small constants (axes, shapes) shared, not repeated; weights never are
            self._consts[key] = name
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """Add a node of one output (named ``out``, else a fresh name); returns that name."""
        return self.ops(op_type, inputs, [out or self.fresh(op_type.lower())], **attrs)[0]

    def ops(self, op_type: str, inputs: list[str], outputs: int | list[str], **attrs: Any) -> list[str]:
        """Add a node of several outputs (``outputs`` fresh names, or these names); returns them."""
        names = [self.fresh(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(self.helper.make_node(op_type, inputs, names, name=self.fresh(op_type), **attrs))
        return names


def _all_ints(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(isinstance(v, int) and not isinstance(v, bool) for v in items)


# -- the recurrent stack -------------------------------------------------------------------------


def native_op(cell: RecurrentCell) -> NativeOp:
    """The ONNX operator computing ``cell``, or a one-line error for a cell without one."""
    found = NATIVE.get(type(cell))
    if found is None:
        raise RnnkitError(
            f"ONNX export: the cell {type(cell).__name__} has no ONNX export yet (no ONNX operator "
            "computes it); a folder export (--format folder) holds every cell"
        )
    return found


def describe_rnn(rnn: RNN) -> str:
    """One line on how ``rnn`` runs in the ONNX graph (the export says it for every stack)."""
    cell = rnn.cell
    how = f"ONNX's own {native_op(cell).op} operator"
    if isinstance(cell, ElmanCell):
        how += f" (activation {_ACTIVATION[cell.nonlinearity]})"
    if isinstance(cell, GRUCell):
        how += f" (linear_before_reset={int(cell.reset_after)})"
    shape = f"{rnn.num_layers} layer{'s' * (rnn.num_layers > 1)}"
    sides = "bidirectional" if rnn.bidirectional else "forward"
    return f"{type(cell).__name__}, {shape}, {sides}: {how}, fused; not a loop"


def _layer_weights(rnn: RNN, layer: int, op: NativeOp, g: Graph) -> tuple[str, str, str]:
    """W, R and B of one layer (both directions) in ONNX's layout and gate order."""
    H, D = rnn.hidden_size, rnn.num_directions
    W, R, B = [], [], []
    for d in range(D):
        p = rnn.layer_parameters(layer * D + d)

        def reorder(t: Tensor) -> np.ndarray:
            blocks = _array(t).reshape(len(op.order), H, *t.shape[1:])
            return np.concatenate([blocks[i] for i in op.order])

        W.append(reorder(p["weight_ih"]))
        R.append(reorder(p["weight_hh"]))
        if rnn.cell.bias:
            B.append(np.concatenate([reorder(p["bias_ih"]), reorder(p["bias_hh"])]))
    bias = g.const(np.stack(B), "B") if B else ""
    return g.const(np.stack(W), "W"), g.const(np.stack(R), "R"), bias


def recurrent_stack(
    g: Graph, rnn: RNN, x: str, h0: str | None, c0: str | None, lengths: str | None
) -> tuple[str, str, str | None]:
    """``rnn`` over ``x`` (L, N, H_in): output (L, N, D*H) and final h (and c) (D*layers, N, H).

    ``h0``/``c0`` are the whole stack's initial states (D*layers, N, H), or None for the
    stack's own (zeros, or its learned state); ``lengths`` is int32 (N,) or None. Dropout
    between layers is the identity in eval mode.
    """
    op = native_op(rnn.cell)
    if h0 is None and rnn.cell.learn_initial_state:
        batch = g.op("Slice", [g.op("Shape", [x]), g.const([1]), g.const([2])])
        shape = g.op(
            "Concat",
            [g.const([rnn.num_layers * rnn.num_directions]), batch, g.const([rnn.hidden_size])],
            axis=0,
        )
        h0, *rest = (g.op("Expand", [g.const(v, "initial"), shape]) for v in initial_values(rnn))
        c0 = rest[0] if rest else None
    D, H = rnn.num_directions, rnn.hidden_size
    lstm = op.op == "LSTM"
    attrs: dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    cell = rnn.cell
    if isinstance(cell, ElmanCell):
        attrs["activations"] = [_ACTIVATION[cell.nonlinearity]] * D
    if isinstance(cell, GRUCell):
        attrs["linear_before_reset"] = int(cell.reset_after)
    finals_h, finals_c = [], []
    for layer in range(rnn.num_layers):
        W, R, B = _layer_weights(rnn, layer, op, g)

        inputs = [x, W, R, B, lengths or "", _layer_state(g, h0, layer, D)]
        if lstm:
            inputs += [_layer_state(g, c0, layer, D)]
        y, h, *c = g.ops(op.op, inputs, 3 if lstm else 2, **attrs)
        finals_h.append(h)
        finals_c += c
        # Y is (L, D, N, H): directions next to the features, then [h→; h←] as torch concatenates
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3])
        x = g.op("Reshape", [y, g.const([0, 0, -1])])
    h_n = finals_h[0] if len(finals_h) == 1 else g.op("Concat", finals_h, axis=0)
    c_n = None
    if lstm:
        c_n = finals_c[0] if len(finals_c) == 1 else g.op("Concat", finals_c, axis=0)
    return x, h_n, c_n


def initial_values(rnn: RNN) -> list[np.ndarray]:
    """The stack's initial h (and c), (D*layers, 1, H) each: zeros, or the learned ``h_0`` (``c_0``)."""
    shape = (rnn.num_layers * rnn.num_directions, 1, rnn.hidden_size)
    names = ("h_0", "c_0")[: 1 + rnn.cell.has_cell_state]
    if not rnn.cell.learn_initial_state:
        return [np.zeros(shape, np.float32) for _ in names]
    layers = [rnn.layer_parameters(i) for i in range(shape[0])]
    return [np.stack([_array(p[name])[None] for p in layers]) for name in names]


def _layer_state(g: Graph, state: str | None, layer: int, D: int) -> str:
    """Layer ``layer``'s rows (D, N, H) of a whole stack's state; "" (ONNX: zeros) for None."""
    if state is None:
        return ""
    return g.op("Slice", [state, g.const([layer * D]), g.const([(layer + 1) * D]), g.const([0])])


def directions_side_by_side(g: Graph, finals: str, D: int) -> str:
    """The last layer's final states (its D directions of (N, H)) as one (N, D*H) row each."""
    top = g.op("Slice", [finals, g.const([-D]), g.const([2**62]), g.const([0])])
    return g.op("Reshape", [g.op("Transpose", [top], perm=[1, 0, 2]), g.const([0, -1])])


# -- layers around it ----------------------------------------------------------------------------


def embedding(g: Graph, table: nn.Embedding, ids: str) -> str:
    return g.op("Gather", [g.const(table.weight, "embedding"), ids])


def linear(g: Graph, layer: nn.Linear, x: str) -> str:
    """x W^T (+ b) over the last axis of ``x``."""
    y = g.op("MatMul", [x, g.const(_array(layer.weight).T.copy(), "weight")])
    return y if layer.bias is None else g.op("Add", [y, g.const(layer.bias, "bias")])


def head_log_probs(g: Graph, head: OutputHead, h: str) -> str:
    """Every token's log-probability from features ``h`` (..., H): the head's ``log_probs``."""
    if isinstance(head, FullSoftmax):
        return g.op("LogSoftmax", [linear(g, head.proj, h)], axis=-1)
    if isinstance(head, AdaptiveSoftmax):
        # Grave et al. 2017, as torch's log_prob: the head's log-softmax over frequent words and
        # cluster scores; a rare word's is its cluster's score plus its log-softmax in the cluster
        asm = head.asm
        head_lp = g.op("LogSoftmax", [linear(g, asm.head, h)], axis=-1)
        short = int(asm.shortlist_size)
        parts = [g.op("Slice", [head_lp, g.const([0]), g.const([short]), g.const([-1])])]
        for i, tail in enumerate(asm.tail):  # each a Sequential: h -> a smaller h -> the cluster's words
            down, up = tail.children()
            assert isinstance(down, nn.Linear) and isinstance(up, nn.Linear)
            inner = g.op("LogSoftmax", [linear(g, up, linear(g, down, h))], axis=-1)
            cluster = g.op("Slice", [head_lp, g.const([short + i]), g.const([short + i + 1]), g.const([-1])])
            parts.append(g.op("Add", [inner, cluster]))
        return g.op("Concat", parts, axis=-1)
    raise RnnkitError(f"ONNX export: no ONNX form for the output head {type(head).__name__}")


def head_target_log_probs(g: Graph, head: OutputHead, h: str, targets: str) -> str:
    """log P(target | h) (M,) from features ``h`` (M, H) and int64 ``targets`` (M,): the head's
    ``log_prob``, computing only what those targets need.

    A full softmax needs every logit for its normalizer, so it saves only the (M, V) output.
    An adaptive softmax computes its head (frequent words and cluster scores) at every
    position, but each tail cluster only at the positions whose target is in it: those rows
    are gathered, projected, log-softmaxed and scattered back, as torch's module does.
    """
    if isinstance(head, FullSoftmax):
        return _pick(g, g.op("LogSoftmax", [linear(g, head.proj, h)], axis=-1), targets)
    if isinstance(head, AdaptiveSoftmax):
        asm = head.asm
        short = int(asm.shortlist_size)
        bounds = [int(c) for c in asm.cutoffs]  # shortlist, then each cluster's end; the last is |V|
        # a frequent word's column in the head is its id; a rare word's, its cluster's score
        column = g.op("Where", [g.op("Less", [targets, g.const(short)]), targets, g.const(short)])
        for i, bound in enumerate(bounds[1:-1], 1):
            beyond = g.op("GreaterOrEqual", [targets, g.const(bound)])
            column = g.op("Where", [beyond, g.const(short + i), column])
        total = _pick(g, g.op("LogSoftmax", [linear(g, asm.head, h)], axis=-1), column)
        for i, tail in enumerate(asm.tail):
            down, up = tail.children()
            assert isinstance(down, nn.Linear) and isinstance(up, nn.Linear)
            low, high = bounds[i], bounds[i + 1]
            inside = g.op(
                "And",
                [g.op("GreaterOrEqual", [targets, g.const(low)]), g.op("Less", [targets, g.const(high)])],
            )
            rows = g.op("Reshape", [g.op("NonZero", [inside]), g.const([-1])])
            local = g.op("Sub", [g.op("Gather", [targets, rows], axis=0), g.const(low)])
            features = g.op("Gather", [h, rows], axis=0)
            inner = _pick(g, g.op("LogSoftmax", [linear(g, up, linear(g, down, features))], axis=-1), local)
            total = g.op("ScatterElements", [total, rows, inner], axis=0, reduction="add")
        return total
    raise RnnkitError(f"ONNX export: no ONNX form for the output head {type(head).__name__}")


def _pick(g: Graph, log_probs: str, columns: str) -> str:
    """``log_probs[m, columns[m]]`` (M,) of (M, C) and int64 (M,)."""
    picked = g.op("GatherElements", [log_probs, g.op("Unsqueeze", [columns, g.const([1])])], axis=1)
    return g.op("Squeeze", [picked, g.const([1])])


def step_mask(g: Graph, lengths: str, like: str) -> str:
    """Bool (L, N): step t is a real token of sequence n; L is ``like``'s first axis."""
    L = g.op("Squeeze", [g.op("Slice", [g.op("Shape", [like]), g.const([0]), g.const([1])]), g.const([0])])
    steps = g.op("Range", [g.const(0), L, g.const(1)])
    return g.op(
        "Less", [g.op("Unsqueeze", [steps, g.const([1])]), g.op("Unsqueeze", [lengths, g.const([0])])]
    )
