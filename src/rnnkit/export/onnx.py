"""A trained model as one ONNX file: explicit recurrent state, dynamic shapes, its vocabulary inside.

:func:`export_onnx` writes what :func:`rnnkit.load` returns (a language model, a tagger or a
classifier) as an ONNX graph that ONNX Runtime runs with nothing of rnnkit or torch:

* every recurrent stack is ONNX's own ``RNN``/``GRU``/``LSTM`` operator (fused in ONNX Runtime),
  which computes each rnnkit cell exactly (:data:`rnnkit.export.graph.NATIVE`);
* the state is an input and an output: ``h0`` (and ``c0`` for an LSTM) of shape
  (D*num_layers, N or 1, H) in, ``hN`` (``cN``) out, torch's layout, so a caller streams a
  text in pieces by feeding each call's ``hN`` to the next;
* batch and sequence length are dynamic; taggers and classifiers take ``lengths`` (N,) for
  padded batches (padding after each sentence never changes its results);
* time-major, as rnnkit is: ids are (L, N).

The metadata property ``rnnkit`` holds JSON a script tokenizes and decodes with: the
format version, task, inputs and outputs, the initial state, how each recurrence runs, the
run's configuration and its vocabularies (and a BPE run's tokenizer).

``quantize="int8"`` writes the same graph with int8 weights (:mod:`rnnkit.export.quantize`):
about four times smaller, faster on a CPU, its metadata saying what was quantized.

``scoring=True`` writes a language model's *scoring graph* instead: tokens, targets and
lengths in, ``target_log_probs`` (L, N) out (0 past each sequence's end), the state as ever.
It computes only what those targets need (an adaptive softmax's tail clusters only at the
positions whose target is in them) and never forms the (L, N, V) distribution: what
``rnnkit score`` does, for perplexity and per-token surprisal at a fraction of the cost.
Its metadata says ``"graph": "scores"``; the default file is unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit.errors import RnnkitError

if TYPE_CHECKING:
    import onnx
    from torch import nn

    from rnnkit.inference import Trained
    from rnnkit.layers.rnn import RNN

FORMAT = 1
"""The version of the ONNX files rnnkit writes (their inputs, outputs and metadata)."""

OPSET = 17
"""ONNX opset of the graph: ONNX Runtime 1.13 and later run it, with fused RNN/GRU/LSTM kernels."""

IR_VERSION = 8
"""The ONNX file format version matching :data:`OPSET` (newer files would shut out older runtimes)."""

METADATA_KEY = "rnnkit"


def require_onnx() -> None:
    """A one-line error naming what to install when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RnnkitError(
            "ONNX export needs the onnx package: pip install 'rnnkit[export]' (or: pip install onnx)"
        ) from None


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, the task, and how each recurrence runs in it."""

    path: Path
    task: str
    recurrences: dict[str, str]
    quantized: str | None = None
    scoring: bool = False

    def lines(self) -> list[str]:
        """Human lines for a command to print."""
        weights = f", {self.quantized} weights" if self.quantized else ""
        weights += ", scoring graph (targets in, their log-probabilities out)" if self.scoring else ""
        return [f"wrote {self.path} (ONNX opset {OPSET}, task {self.task!r}{weights})"] + [
            f"  {name}: {how}" for name, how in self.recurrences.items()
        ]


def export_onnx(
    trained: Trained,
    path: str | os.PathLike[str],
    overwrite: bool = False,
    quantize: str | None = None,
    scoring: bool = False,
) -> OnnxExport:
    """Write the trained run ``trained`` (what :func:`rnnkit.load` returns) to ``path`` as ONNX.

    Refuses an existing ``path`` unless ``overwrite``. ``quantize="int8"``: int8 weights by
    ONNX Runtime's dynamic quantization (:func:`rnnkit.export.quantize.quantize_onnx`), which
    needs ``onnxruntime`` too. ``scoring=True`` (language models): the scoring graph, targets
    in and their log-probabilities out (see the module's notes). Returns what was written and
    how each recurrent stack runs there.
    """
    from rnnkit.export.quantize import check_quantize, int8_recurrences, quantize_onnx, require_onnxruntime

    check_quantize(quantize)
    require_onnx()
    if quantize is not None:
        require_onnxruntime()
    path = Path(path)
    if path.is_dir():
        raise RnnkitError(f"{path}: is a directory; give the .onnx file to write")
    if path.exists() and not overwrite:
        raise RnnkitError(f"{path}: already exists; remove it or choose another file")
    if not path.parent.is_dir():
        raise RnnkitError(f"{path.parent}: no such directory to write {path.name} into")
    extra = run_metadata(trained)
    model = to_onnx(trained.model, extra, scoring)
    if quantize is not None:
        recurrences = int8_recurrences(read_metadata(model)["recurrences"])
        extra["quantized"] = {
            "weights": quantize,
            "how": "ONNX Runtime dynamic quantization (int8 weights, activations quantized per call) of "
            "MatMul, LSTM and Gather; GRU and RNN operators stay float32",
        }
        model = quantize_onnx(model)
        set_metadata(model, {**read_metadata(model), **extra, "recurrences": recurrences})
    from rnnkit.fileio import write_bytes_atomic

    write_bytes_atomic(path, model.SerializeToString())
    info = read_metadata(model)
    return OnnxExport(path, info["task"], info["recurrences"], quantize, scoring)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The ``rnnkit`` metadata of an exported model, as a dict."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise RnnkitError("not an ONNX model exported by rnnkit (no 'rnnkit' metadata)")
    info: dict[str, Any] = json.loads(props[METADATA_KEY])
    return info


def set_metadata(model: onnx.ModelProto, info: dict[str, Any]) -> None:
    """Replace the ``rnnkit`` metadata of ``model`` with ``info``."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(info, ensure_ascii=False)
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info, ensure_ascii=False)


def to_onnx(model: nn.Module, extra: dict[str, Any] | None = None, scoring: bool = False) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (a :class:`~rnnkit.models.language_model.LanguageModel`,
    :class:`~rnnkit.models.tagger.Tagger` or :class:`~rnnkit.models.classifier.Classifier`)
    in float32, its metadata ``extra`` merged over what the graph itself says; ``scoring``:
    a language model's scoring graph (targets in, their log-probabilities out)."""
    require_onnx()
    from onnx import checker, helper

    from rnnkit.export import models
    from rnnkit.export.graph import Graph
    from rnnkit.layers.rnn import RNN

    g = Graph()
    task, inputs, outputs, recurrences = models.build(g, model, scoring)
    assert isinstance(model.rnn, RNN)  # every model models.build takes has one
    info = {
        "format": FORMAT,
        "task": task,
        "layout": "time-major: ids (L, N), states (D*num_layers, N, H)",
        "signature": models.signature(model, scoring),
        **({"graph": "scores"} if scoring else {}),
        "inputs": {v.name: _shape(v) for v in inputs},
        "outputs": {v.name: _shape(v) for v in outputs},
        "state": initial_state(model.rnn),
        "recurrences": recurrences,
        **(extra or {}),
    }
    graph = helper.make_graph(g.nodes, f"rnnkit_{task}", inputs, outputs, g.initializers)
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="rnnkit",
        producer_version=_version(),
        doc_string=f"rnnkit {task} model; read the 'rnnkit' metadata property (JSON) for its inputs",
    )
    set_metadata(proto, info)
    checker.check_model(proto)
    return proto


def _shape(value: Any) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


def _version() -> str:
    from rnnkit import __version__

    return __version__


def initial_state(rnn: RNN) -> dict[str, Any]:
    """What to feed as ``h0`` (``c0``) for a fresh sequence: zeros, or the learned initial
    state (D*num_layers, 1, H), which broadcasts over the batch."""
    from rnnkit.export.graph import initial_values

    names = ["h0", "c0"][: 1 + rnn.cell.has_cell_state]
    state: dict[str, Any] = {
        "names": names,
        "shape": [rnn.num_layers * rnn.num_directions, 1, rnn.hidden_size],
        "initial": "learned" if rnn.cell.learn_initial_state else "zeros",
    }
    if rnn.cell.learn_initial_state:
        state.update(zip(names, (v.tolist() for v in initial_values(rnn))))
    return state


def run_metadata(trained: Trained) -> dict[str, Any]:
    """What a script needs beside the graph: the run's configuration, its vocabularies (and
    tokenizer), and how text becomes ids, by task."""
    from rnnkit.config import to_dict
    from rnnkit.inference import ClassifierRun, LanguageModelRun, TaggerRun

    config = trained.config
    info: dict[str, Any] = {"rnnkit_version": _version(), "config": to_dict(config)}
    if isinstance(trained, LanguageModelRun):
        info["vocab"] = trained.vocab.to_json()
        info["level"] = trained.codec.level
        info["sentence_end"] = trained.codec.sentence_end
        if trained.codec.tokenizer is not None:
            info["tokenizer"] = trained.codec.tokenizer.to_str()
    elif isinstance(trained, (TaggerRun, ClassifierRun)):
        assert trained.vocab is not None  # their words
        info["words"] = trained.vocab.to_json()
        info["word_key"] = {"lowercase": config.data.lowercase, "zero_digits": config.data.zero_digits}
    if isinstance(trained, TaggerRun):
        corpus = trained.task.corpus
        info["tags"] = corpus.tags.tokens
        info["chars"] = corpus.chars.to_json()
        info["spans"] = corpus.spans
    if isinstance(trained, ClassifierRun):
        info["classes"] = trained.classes
    return info
