"""Each task's model as an ONNX graph: its inputs, its forward pass in ONNX nodes, its outputs.

One function per model class, each the model's ``forward`` in eval mode (dropout is the
identity) with the recurrent state made explicit; :func:`build` picks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnx import TensorProto, helper
from torch import nn

from rnnkit.errors import RnnkitError
from rnnkit.export.crf import viterbi
from rnnkit.export.graph import (
    Graph,
    describe_rnn,
    directions_side_by_side,
    embedding,
    head_log_probs,
    head_target_log_probs,
    linear,
    recurrent_stack,
    step_mask,
)
from rnnkit.layers.rnn import RNN
from rnnkit.models.classifier import Classifier
from rnnkit.models.language_model import LanguageModel
from rnnkit.models.tagger import Tagger

Built = tuple[str, list[Any], list[Any], dict[str, str]]
"""(task, graph inputs, graph outputs, how each recurrent stack runs by its module name)."""


def _ids(name: str, *dims: str) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.INT64, list(dims))


def _floats(name: str, *dims: str | int) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def _state(g: Graph, rnn: RNN, ids: str) -> tuple[list[Any], list[Any], str, str | None]:
    """The state inputs and outputs of ``rnn``, and the initial state broadcast to the batch of
    ``ids`` (L, N): a caller may pass (D*num_layers, 1, H) for every sequence alike."""
    LD, H = rnn.num_layers * rnn.num_directions, rnn.hidden_size
    names = ["h0", "c0"] if rnn.cell.has_cell_state else ["h0"]
    inputs = [_floats(n, LD, "state_batch", H) for n in names]
    outputs = [_floats(n.replace("0", "N"), LD, "batch", H) for n in names]
    batch = g.op("Slice", [g.op("Shape", [ids]), g.const([1]), g.const([2])])
    shape = g.op("Concat", [g.const([LD]), batch, g.const([H])], axis=0)
    expanded = [g.op("Expand", [n, shape]) for n in names]
    return inputs, outputs, expanded[0], (expanded[1] if len(expanded) > 1 else None)


def _finals(g: Graph, h_n: str, c_n: str | None) -> None:
    g.op("Identity", [h_n], "hN")
    if c_n is not None:
        g.op("Identity", [c_n], "cN")


def language_model(g: Graph, model: LanguageModel) -> Built:
    """tokens (L, N), h0 [, c0] -> log_probs (L, N, V) of the next token at every step, hN [, cN]."""
    state_in, state_out, h0, c0 = _state(g, model.rnn, "tokens")
    h, h_n, c_n = recurrent_stack(g, model.rnn, embedding(g, model.embedding, "tokens"), h0, c0, None)
    if model.projection is not None:
        h = linear(g, model.projection, h)
    g.op("Identity", [head_log_probs(g, model.head, h)], "log_probs")
    _finals(g, h_n, c_n)
    vocab = model.embedding.num_embeddings
    outputs = [_floats("log_probs", "seq", "batch", vocab), *state_out]
    return "lm", [_ids("tokens", "seq", "batch"), *state_in], outputs, {"rnn": describe_rnn(model.rnn)}


def language_model_scores(g: Graph, model: LanguageModel) -> Built:
    """tokens (L, N), targets (L, N), lengths (N,), h0 [, c0] -> target_log_probs (L, N): log P(targets[t, n]
    | tokens[<=t, n]), 0 past each sequence's end; hN [, cN] after each sequence's last token."""
    state_in, state_out, h0, c0 = _state(g, model.rnn, "tokens")
    lengths = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    x = embedding(g, model.embedding, "tokens")
    h, h_n, c_n = recurrent_stack(g, model.rnn, x, h0, c0, lengths)
    if model.projection is not None:
        h = linear(g, model.projection, h)
    # the head on (L*N, H) rows, so a tail cluster can gather the rows whose target is in it
    rows = g.op("Flatten", [h], axis=2)
    targets = g.op("Reshape", ["targets", g.const([-1])])
    flat = head_target_log_probs(g, model.head, rows, targets)
    scores = g.op("Reshape", [flat, g.op("Shape", ["targets"])])
    g.op("Where", [step_mask(g, "lengths", "tokens"), scores, g.const(0.0)], "target_log_probs")
    _finals(g, h_n, c_n)
    inputs = [_ids("tokens", "seq", "batch"), _ids("targets", "seq", "batch"), _ids("lengths", "batch")]
    outputs = [_floats("target_log_probs", "seq", "batch"), *state_out]
    return "lm", [*inputs, *state_in], outputs, {"rnn": describe_rnn(model.rnn)}


def tagger(g: Graph, model: Tagger) -> Built:
    """words (L, N), lengths (N,) [, chars (C, W), char_lengths (W,), word_index (L, N)], h0 [, c0]
    -> scores (L, N, T), tags (L, N) (the argmax, or the CRF's Viterbi path; -1 past each
    sentence's end), hN [, cN]."""
    state_in, state_out, h0, c0 = _state(g, model.rnn, "words")
    inputs = [_ids("words", "seq", "batch"), _ids("lengths", "batch")]
    recurrences = {"rnn": describe_rnn(model.rnn)}
    x = embedding(g, model.embedding, "words")
    if model.chars is not None:  # the final states of a BiRNN over each distinct word's characters
        inputs += [_ids("chars", "char_seq", "distinct_words"), _ids("char_lengths", "distinct_words")]
        inputs += [_ids("word_index", "seq", "batch")]
        char_rnn = model.chars.rnn
        spelled = embedding(g, model.chars.embedding, "chars")
        char_lengths = g.op("Cast", ["char_lengths"], to=TensorProto.INT32)
        _, finals, _ = recurrent_stack(g, char_rnn, spelled, None, None, char_lengths)
        per_word = directions_side_by_side(g, finals, char_rnn.num_directions)
        x = g.op("Concat", [x, g.op("Gather", [per_word, "word_index"])], axis=-1)
        recurrences["chars.rnn"] = describe_rnn(char_rnn)
    lengths = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    h, h_n, c_n = recurrent_stack(g, model.rnn, x, h0, c0, lengths)
    scores = g.op("Identity", [linear(g, model.proj, h)], "scores")
    mask = step_mask(g, "lengths", "words")
    if model.crf is not None:
        path = viterbi(g, model.crf, scores, mask)
        recurrences["crf"] = "Viterbi decoding as two ONNX Scan loops (forward max, back-pointers)"
    else:
        path = g.op("ArgMax", [scores], axis=-1, keepdims=0)
    g.op("Where", [mask, path, g.const(-1)], "tags")
    _finals(g, h_n, c_n)
    outputs = [
        _floats("scores", "seq", "batch", model.proj.out_features),
        _ids("tags", "seq", "batch"),
        *state_out,
    ]
    return "tag", [*inputs, *state_in], outputs, recurrences


def classifier(g: Graph, model: Classifier) -> Built:
    """words (L, N), lengths (N,), h0 [, c0] -> log_probs (N, C) of each class, hN [, cN]."""
    state_in, state_out, h0, c0 = _state(g, model.rnn, "words")
    x = embedding(g, model.embedding, "words")
    lengths = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    h, h_n, c_n = recurrent_stack(g, model.rnn, x, h0, c0, lengths)
    if model.pooling == "final":  # the last forward state and the first backward state
        pooled = directions_side_by_side(g, h_n, model.rnn.num_directions)
    else:
        mask = g.op("Unsqueeze", [step_mask(g, "lengths", "words"), g.const([2])])
        if model.pooling == "max":
            padded = g.op("Where", [mask, h, g.const(float("-inf"))])
            pooled = g.op("ReduceMax", [padded], axes=[0], keepdims=0)
        else:
            real = g.op("Mul", [h, g.op("Cast", [mask], to=TensorProto.FLOAT)])
            total = g.op("ReduceSum", [real, g.const([0])], keepdims=0)
            count = g.op("Cast", [g.op("Unsqueeze", ["lengths", g.const([1])])], to=TensorProto.FLOAT)
            pooled = g.op("Div", [total, count])
    g.op("LogSoftmax", [linear(g, model.proj, pooled)], "log_probs", axis=-1)
    _finals(g, h_n, c_n)
    outputs = [_floats("log_probs", "batch", model.proj.out_features), *state_out]
    inputs = [_ids("words", "seq", "batch"), _ids("lengths", "batch"), *state_in]
    return "classify", inputs, outputs, {"rnn": describe_rnn(model.rnn)}


BUILDERS: dict[type[nn.Module], Callable[[Graph, Any], Built]] = {
    LanguageModel: language_model,
    Tagger: tagger,
    Classifier: classifier,
}
"""Every model class rnnkit exports, and its graph."""


SCORING: dict[type[nn.Module], Callable[[Graph, Any], Built]] = {LanguageModel: language_model_scores}
"""Every model class with a scoring graph (``scoring=True``): log P of given targets only."""


def build(g: Graph, model: nn.Module, scoring: bool = False) -> Built:
    """``model``'s graph into ``g`` (see :data:`BUILDERS`), or its scoring graph (:data:`SCORING`)."""
    return _builder(model, scoring)(g, model)


def signature(model: nn.Module, scoring: bool = False) -> str:
    """One line: the graph's inputs and outputs for ``model`` (its builder's summary)."""
    return " ".join((_builder(model, scoring).__doc__ or "").split())


def _builder(model: nn.Module, scoring: bool = False) -> Callable[[Graph, Any], Built]:
    builder = BUILDERS.get(type(model))
    if builder is None:
        raise RnnkitError(f"ONNX export: no ONNX form for a {type(model).__name__} (a task's model expected)")
    if scoring:
        builder = SCORING.get(type(model))
        if builder is None:
            raise RnnkitError(
                f"ONNX export: a scoring graph is for language models, not a {type(model).__name__}"
            )
    return builder
