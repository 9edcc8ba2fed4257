"""A CRF tagger's Viterbi decoding as ONNX Scan loops (the one part of an exported model that loops)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.export.graph import Graph
from rnnkit.models.crf import CRF


def viterbi(g: Graph, crf: CRF, emissions: str, mask: str) -> str:
    """The best tag path (L, N) int64 under ``crf``, as :meth:`CRF.decode` finds it.

    A forward Scan keeps the best score of each tag and emits back-pointers; a reverse Scan
    follows them from each sentence's best last tag. Past a sentence's end its scores stay
    as they were (as in ``decode``), so its path is read from its own last word. Both scans
    run over all L steps, step 0 a no-op (ONNX Runtime refuses a Scan of zero steps, and a
    sentence may have one word).
    """
    from onnx import TensorProto

    h = g.helper
    K = crf.num_tags
    transitions = g.const(crf.transitions, "transitions")

    def value(name: str, elem: int, shape: list[Any]) -> Any:
        return h.make_tensor_value_info(name, elem, shape)

    def first(t: str) -> str:
        return g.op("Slice", [t, g.const([0]), g.const([1]), g.const([0])])

    def rest(t: str) -> str:
        return g.op("Slice", [t, g.const([1]), g.const([2**62]), g.const([0])])

    best0 = g.op("Add", [g.const(crf.start, "start"), g.op("Squeeze", [first(emissions), g.const([0])])])
    never = g.op("And", [first(mask), g.const(np.zeros((1, 1), dtype=bool))])
    moves = g.op("Concat", [never, rest(mask)], axis=0)  # steps 1..length-1 of each sentence

    # forward: best (N, K) <- max_{y'} (best(y') + A[y', y]) + e_t(y) at each step that moves
    fwd = g.body()
    cand = fwd.op("Add", [fwd.op("Unsqueeze", ["best_in", fwd.const([2])]), transitions])
    scores = fwd.op("ReduceMax", [cand], axes=[1], keepdims=0)
    fwd.op("ArgMax", [cand], "back_out", axis=1, keepdims=0)
    stepped = fwd.op("Add", [scores, "e_t"])
    fwd.op("Where", [fwd.op("Unsqueeze", ["m_t", fwd.const([1])]), stepped, "best_in"], "best_out")
    forward_body = h.make_graph(
        fwd.nodes,
        "viterbi_forward",
        [
            value("best_in", TensorProto.FLOAT, ["N", K]),
            value("e_t", TensorProto.FLOAT, ["N", K]),
            value("m_t", TensorProto.BOOL, ["N"]),
        ],
        [value("best_out", TensorProto.FLOAT, ["N", K]), value("back_out", TensorProto.INT64, ["N", K])],
    )
    best, pointers = g.ops("Scan", [best0, emissions, moves], 2, body=forward_body, num_scan_inputs=2)
    last = g.op("ArgMax", [g.op("Add", [best, g.const(crf.end, "end")])], axis=1, keepdims=0)

    # backward, t = L-1 .. 0: where step t moved, the tag at t-1 is back[t][tag at t]
    bwd = g.body()
    came = bwd.op("GatherElements", ["back_t", bwd.op("Unsqueeze", ["tag_in", bwd.const([1])])], axis=1)
    moved = bwd.op("Squeeze", [came, bwd.const([1])])
    bwd.op("Where", ["m_t", moved, "tag_in"], "tag_out")
    bwd.op("Identity", ["tag_out"], "path_out")
    backward_body = h.make_graph(
        bwd.nodes,
        "viterbi_backward",
        [
            value("tag_in", TensorProto.INT64, ["N"]),
            value("back_t", TensorProto.INT64, ["N", K]),
            value("m_t", TensorProto.BOOL, ["N"]),
        ],
        [value("tag_out", TensorProto.INT64, ["N"]), value("path_out", TensorProto.INT64, ["N"])],
    )
    _, before = g.ops(
        "Scan",
        [last, pointers, moves],
        2,
        body=backward_body,
        num_scan_inputs=2,
        scan_input_directions=[1, 1],
        scan_output_directions=[1],
    )
    # before[t] is the tag at t-1 (before[0] is unused): the path is before[1:], then the last tag
    return g.op("Concat", [rest(before), g.op("Unsqueeze", [last, g.const([0])])], axis=0)
