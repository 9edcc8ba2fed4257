"""int8 inference: ONNX Runtime's dynamic quantization of an exported graph, and torch's of a model.

*Dynamic* quantization stores the weights as int8 (one scale per matrix, or per row) and
quantizes each activation on the fly from its own range, so it needs no calibration data;
a recurrent model's inference at small batches streams its weights once per step, so
weights four times smaller make it faster where memory bandwidth is the limit.

* :func:`quantize_onnx`: what ``export_onnx(..., quantize="int8")`` writes. ONNX Runtime's
  dynamic quantizer (``onnxruntime.quantization.quantize_dynamic``, 1.16 to 1.32 at least)
  has int8 forms of exactly these operators of rnnkit's graphs (:data:`ORT_INT8_OPS`):
  ``MatMul`` (every linear layer and softmax head), ``LSTM`` (its ``DynamicQuantizeLSTM``
  contrib operator) and ``Gather`` (the embedding tables). It has none for ``GRU`` or
  ``RNN``: a GRU or Elman stack stays float32 in an int8 file, and the export says so.
* :func:`quantize_model`: an int8 copy of a model for rnnkit's own CPU inference (score,
  next, generate, predict ``--quantize int8``: :func:`quantize_run`): every ``nn.Linear``
  becomes torch's dynamically quantized linear layer, and an LSTM or (``reset_after``) GRU
  stack becomes torch's dynamically quantized ``LSTM``/``GRU`` (fbgemm's int8 kernels)
  computing the same cell. Elman stacks keep their float32 recurrence.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.cells.base import LSTMState
from rnnkit.errors import RnnkitError
from rnnkit.layers.rnn import RNN

if TYPE_CHECKING:
    import onnx

    from rnnkit.inference import Trained

QUANTIZE_CHOICES = ("int8",)
"""What ``quantize=`` accepts (besides None: float32)."""

ORT_INT8_OPS = ("MatMul", "LSTM", "Gather")
"""The operators of rnnkit's graphs that ONNX Runtime's dynamic quantizer turns int8."""

PER_CHANNEL = False
"""One scale per weight matrix (per-tensor): per-row scales measured no closer to float32."""

REDUCE_RANGE = True
"""Weights in 7 bits, not 8. x86 CPUs without VNNI (AVX2 only, as the AMD EPYC rnnkit is
measured on) multiply uint8 activations by int8 weights with ``vpmaddubsw``, whose 16-bit
sums of pairs saturate on full-range values (ONNX Runtime's documentation advises 7 bits
against it). Measured: on a small LSTM language model trained on a toy corpus, the mean gap
to float32 log-probabilities was 0.0074 nats with 8-bit weights, 0.0014 with 7-bit ones; on
the PTB 2x200 LSTM (ptb-3min) test perplexity rose 0.075% with 8 bits, 0.119% with 7 (and
per-row scales: 0.171%, 0.081%). A small price everywhere against a large one on some
models; the speed is the same."""


def check_quantize(quantize: str | None) -> None:
    """A one-line error for a ``quantize`` value other than None or one of :data:`QUANTIZE_CHOICES`."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise RnnkitError(
            f"quantize must be one of {', '.join(QUANTIZE_CHOICES)} (or none for float32), got {quantize!r}"
        )


def require_onnxruntime() -> None:
    """A one-line error naming what to install when ``onnxruntime`` is missing."""
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise RnnkitError(
            "int8 export needs the onnxruntime package: pip install 'rnnkit[export]' "
            "(or: pip install onnxruntime)"
        ) from None


class _DropPreprocessAdvice(logging.Filter):
    """ONNX Runtime's quantizer advises, on the root logger, a pre-processing pass (shape
    inference and graph fusions) meant for convolutional models; rnnkit's graphs have their
    shapes and fused recurrent operators already, so the advice is noise to a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def quantize_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (float32, as :func:`rnnkit.export.to_onnx` builds it) with int8 weights:
    ONNX Runtime's dynamic quantization of :data:`ORT_INT8_OPS`, its metadata kept."""
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _DropPreprocessAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        with tempfile.TemporaryDirectory(prefix="rnnkit-int8-") as tmp:
            path = Path(tmp) / "int8.onnx"
            quantize_dynamic(
                model,
                path,
                op_types_to_quantize=list(ORT_INT8_OPS),
                per_channel=PER_CHANNEL,
                reduce_range=REDUCE_RANGE,
                weight_type=QuantType.QInt8,
            )
            quantized = onnx.load(str(path))
    finally:
        root.removeFilter(advice)
    return quantized


def int8_recurrences(recurrences: dict[str, str]) -> dict[str, str]:
    """How each recurrence runs once quantized: an LSTM as ONNX Runtime's int8 LSTM; a GRU
    or Elman stack stays float32 (no int8 form of those operators in ONNX Runtime); the CRF's
    loops are untouched."""
    out = {}
    for name, how in recurrences.items():
        if "LSTM operator" in how:
            how = how.replace("ONNX's own LSTM operator", "ONNX Runtime's DynamicQuantizeLSTM (int8 weights)")
        elif "GRU operator" in how or "RNN operator" in how:
            how += "; float32 (ONNX Runtime quantizes no GRU or RNN operator)"
        out[name] = how
    return out


# -- torch: rnnkit's own CPU inference in int8 -------------------------------------------------


class Int8Recurrence(nn.Module):
    """An LSTM or GRU stack (:class:`~rnnkit.layers.rnn.RNN`) as torch's dynamically quantized
    ``LSTM``/``GRU``: the same ``forward(input, state, lengths)`` and results (to int8 rounding).

    Inference only (eval mode; no dropout). ``lengths`` are packed as torch's modules take
    them, so the padding after a sequence is never read. Each call quantizes its inputs by
    their own range, so a sequence's results depend on its batch, and a text streamed in
    pieces on how it is cut, to int8 rounding (about 1e-3 in log-probability).
    """

    def __init__(self, rnn: RNN) -> None:
        super().__init__()
        cell = rnn.cell
        kind = nn.LSTM if isinstance(cell, LSTMCell) else nn.GRU
        self.input_size, self.hidden_size = rnn.input_size, rnn.hidden_size
        self.num_layers, self.num_directions = rnn.num_layers, rnn.num_directions
        self.bidirectional = rnn.bidirectional
        self.lstm = kind is nn.LSTM
        float_rnn = kind(
            rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=cell.bias, bidirectional=rnn.bidirectional
        )
        weights: dict[str, Tensor] = {}
        for index in range(rnn.num_layers * rnn.num_directions):
            layer, direction = divmod(index, rnn.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            for name, value in rnn.layer_parameters(index).items():
                if name.startswith(("weight_", "bias_")):
                    weights[name + suffix] = value.detach().float().cpu()
        float_rnn.load_state_dict(weights, strict=True)
        self.rnn = _quantize(nn.Sequential(float_rnn), {nn.LSTM, nn.GRU})[0]
        shape = (rnn.num_layers * rnn.num_directions, 1, rnn.hidden_size)
        initial = [torch.zeros(shape) for _ in range(1 + self.lstm)]
        if cell.learn_initial_state:
            layers = [rnn.layer_parameters(i) for i in range(shape[0])]
            names = ("h_0", "c_0")[: 1 + self.lstm]
            initial = [torch.stack([p[n].detach().float().cpu()[None] for p in layers]) for n in names]
        for name, value in zip(("h_0", "c_0"), initial):
            self.register_buffer(name, value)

    def forward(
        self, input: Tensor, state: Tensor | tuple[Tensor, Tensor] | None = None, lengths: Any = None
    ) -> tuple[Tensor, Tensor | LSTMState]:
        N = input.shape[1]
        if state is None:
            state = (self.h_0, self.c_0) if self.lstm else self.h_0
        states = tuple(state) if self.lstm else (state,)
        hx = tuple(s.expand(-1, N, -1).contiguous() for s in states)
        x: Any = input
        if lengths is not None:
            x = pack_padded_sequence(input, torch.as_tensor(lengths).cpu(), enforce_sorted=False)
        out, final = self.rnn(x, hx if self.lstm else hx[0])
        if lengths is not None:
            out = pad_packed_sequence(out, total_length=input.shape[0])[0]
        return out, (LSTMState(*final) if self.lstm else final)


def _quantize(module: nn.Module, kinds: set[type[nn.Module]]) -> nn.Module:
    """``module`` with its submodules of ``kinds`` swapped, in place, for torch's dynamic int8 forms."""
    if not {"fbgemm", "x86"} & set(torch.backends.quantized.supported_engines):
        raise RnnkitError("int8 inference needs torch's x86 int8 kernels (fbgemm), absent from this torch")
    with warnings.catch_warnings():
        # torch asks eager-mode users to move to torchao; these modules still run, and torch ships them
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(module, kinds, dtype=torch.qint8, inplace=True)


def quantizable(rnn: RNN) -> bool:
    """Whether torch has an int8 module computing ``rnn``'s cell: the LSTM, and the GRU with
    the reset gate after the matrix product (torch's GRU; Cho et al.'s original has none)."""
    cell = rnn.cell
    return isinstance(cell, LSTMCell) or (isinstance(cell, GRUCell) and cell.reset_after)


def quantize_model(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` (a language model, tagger or classifier) for CPU inference.

    Every ``nn.Linear`` (heads, projections) becomes torch's dynamically quantized linear
    layer, every LSTM or GRU stack an :class:`Int8Recurrence`; the rest (embeddings, Elman
    stacks, the CRF) stays float32. The copy is in eval mode, on the CPU; ``model`` is left
    as it was.
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise RnnkitError("int8 inference runs on the CPU; load the run with device='cpu'")
    copied = copy.deepcopy(model).eval().float()
    for name, module in list(copied.named_modules()):
        if isinstance(module, RNN) and quantizable(module):
            parent_name, _, attr = name.rpartition(".")
            setattr(copied.get_submodule(parent_name), attr, Int8Recurrence(module))
    return _quantize(copied, {nn.Linear})


def quantize_run(trained: Trained, quantize: str | None = "int8") -> Trained:
    """``trained`` (what :func:`rnnkit.load` returns, on the CPU) answering in int8: its model
    replaced by :func:`quantize_model`'s copy wherever its methods read it (the run's
    ``model`` for a language model, its task's for a tagger or a classifier), in place.

    For inference only (``score``, ``next``, ``generate``, ``tag``, ``classify``): a run's
    reported figures are its float32 model's, so ``evaluate`` and ``report`` are not for a
    quantized one (``bench/int8.py`` measures what int8 costs). ``quantize=None`` leaves
    ``trained`` as it is.
    """
    check_quantize(quantize)
    if quantize is None:
        return trained
    if trained.device.type != "cpu":
        raise RnnkitError(
            f"int8 inference runs on the CPU; load the run with device='cpu' (it is on {trained.device})"
        )
    trained.model = trained.task.model = quantize_model(trained.model)
    return trained
