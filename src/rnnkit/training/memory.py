"""How much memory a training run needs, estimated before anything large is allocated.

A model whose settings pass every range check can still need more memory than the machine
has: a 1500-wide LSTM over a 100,000-word vocabulary with batch 128 x bptt 70 asks for
tens of GiB in its first step, and torch answers with a traceback (or the kernel's OOM
killer, with nothing). :func:`check_memory` estimates the run from its settings and the
corpus it loaded (the vocabulary is known only then) and refuses in one line with the
numbers and what to lower, before the model is built.

The estimate counts, in fp32:

* the parameters (embeddings, recurrent layers, projection, softmax or tag/class layer),
  their gradients, the optimizer's state (Adam 2 slots, momentum or NT-ASGD's average 1,
  the guard's rollback a copy of both), and three more copies: a checkpoint's serialised
  bytes, and the best model rebuilt and loaded for the final evaluation;
* one training step's activations: per token of the batch (batch x bptt for a language
  model, batch x the longest sentence for taggers and classifiers), the embeddings and each
  layer and direction's saved gate values and states, doubled for the gradients backward
  holds at once; and the logits over the vocabulary (three vocabulary-wide tensors:
  log-softmax output, its gradient, the logits' gradient);
* an evaluation step (no gradients) when it is larger.

The factors were calibrated on the peak resident memory of seven real trainings (language
models with full and adaptive softmaxes, taggers with characters and a CRF, a classifier;
19 MiB to 1 GiB above the loaded corpus): the estimate was 0.8 to 1.5 times the measured
peak. ``tests/test_memory_estimate_18.py`` measures one again.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.config import RunConfig, recurrent_parameters, scaled_cutoffs
from rnnkit.errors import RnnkitError

FLOAT = 4
"""Bytes per value: training holds fp32 weights, gradients and activations (bf16 autocast
halves some activations; the estimate does not count on it)."""

GATES = {"elman": 1, "irnn": 1, "gru": 3, "lstm": 4, "lnlstm": 4, "mingru": 2, "minlstm": 3, "slstm": 4}
"""Gate pre-activations per hidden unit of each cell (the width of its W_hh's output; for the
min cells, which have no W_hh, of its W_ih's: z|h, f|i|h)."""

SAVED_PER_GATE = 2
"""Values a step keeps per gate for backward (the input projection and the activation)."""

SAVED_PER_UNIT = 3
"""Values a step keeps per hidden unit besides its gates (h_t, and c_t and tanh(c_t) or the
candidate state)."""

LOGIT_COPIES = 3
"""Vocabulary-wide tensors alive at once in a full softmax's backward: the log-softmax
output (saved), its gradient and the logits' gradient."""

BACKWARD = 2
"""What backward adds on top of the saved activations: a gradient for each, at its peak."""

PARAMETER_COPIES = 5
"""Copies of the parameters besides the optimizer's state: weights, gradients, a
checkpoint's serialised bytes, the best model rebuilt and its loaded weights at the end."""

VARIABLE_BPTT_MARGIN = 15
"""train.variable_bptt draws window lengths around bptt with N(0, 5^2) noise: 3 sigma."""

GiB = 2**30


@dataclass(frozen=True)
class Estimate:
    """A training run's memory, in bytes: what its parameters and one step need."""

    parameters: int
    """How many parameters the model has (weights and biases, every layer)."""
    parameter_bytes: int
    """The parameters, their gradients, the optimizer's state and the copies saving a
    checkpoint and the final evaluation make."""
    activation_bytes: int
    """One training (or evaluation) step's activations and their gradients, logits included."""
    logit_bytes: int
    """Of ``activation_bytes``, what the output layer's vocabulary-wide tensors take."""
    shape: str
    """What the step is: ``batch 20 x bptt 35, 2 layers x 200 hidden, vocabulary 10,000``."""

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes

    def describe(self) -> str:
        """``about 37.2 GiB (batch 20 x bptt 35, ...: 28.1 GiB of activations, 9.1 GiB of ...)``."""
        return (
            f"about {size(self.total)} ({self.shape}: {size(self.activation_bytes)} of activations "
            f"and logits, {size(self.parameter_bytes)} for {self.parameters:,} parameters with their "
            "gradients and optimizer state)"
        )


def size(nbytes: float) -> str:
    """``37.2 GiB``, ``512.0 MiB``: a byte count as people read it."""
    for unit, scale in (("GiB", GiB), ("MiB", 2**20)):
        if nbytes >= scale or unit == "MiB":
            return f"{nbytes / scale:.1f} {unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Shape:
    """What a step processes: ``steps`` x ``batch`` tokens, an input vocabulary, an output layer."""

    steps: int
    batch: int
    words: int  # rows of the word embedding
    outputs: int  # width of the output layer (vocabulary, tags or classes)
    softmax_tokens: int  # tokens whose output layer is computed (per step: steps x batch or batch)
    extra_parameters: int  # task-specific parameters (character embeddings, CRF)
    extra_activations: int  # task-specific activations per step, in values (character BiLSTM)
    what: str  # "bptt 35" or "the longest sentence, 52 words"
    eval_tokens: int  # tokens of one evaluation batch


def estimate(config: RunConfig, corpus: Any) -> Estimate:
    """The memory training ``config`` on ``corpus`` (a task's loaded corpus) needs, in bytes."""
    m, t = config.model, config.train
    shape = _shape(config, corpus)
    directions = 2 if m.bidirectional else 1
    out = m.projection_size or directions * m.hidden_size
    head, logits = _head(config, out, shape)
    embedding = shape.words * m.embed_size
    if config.task == "lm" and m.tie_weights:
        head -= shape.outputs * out  # the softmax's W_S is the embedding matrix
    parameters = embedding + recurrent_parameters(m, config.task) + head + shape.extra_parameters

    slots = {"adam": 2, "ntasgd": 1}.get(t.optimizer, 1 if t.momentum > 0 else 0)
    copies = PARAMETER_COPIES + slots
    if t.on_nonfinite == "reduce":
        copies += 1 + slots  # the guard's rollback: weights and optimizer state before the update
    parameter_bytes = copies * parameters * FLOAT

    tokens = shape.steps * shape.batch
    per_token = 2 * m.embed_size + directions * m.hidden_size * m.num_layers * (
        SAVED_PER_GATE * GATES.get(m.cell, 4) + SAVED_PER_UNIT
    )
    train_bytes = (BACKWARD * (tokens * per_token + shape.extra_activations) + logits) * FLOAT
    eval_bytes = 2 * shape.eval_tokens * (shape.outputs + per_token) * FLOAT  # no graph: logits twice
    activation_bytes = max(train_bytes, eval_bytes)
    logit_bytes = logits * FLOAT if activation_bytes == train_bytes else 0
    layers = f"{m.num_layers} {'bidirectional ' if m.bidirectional else ''}{m.cell} layers x {m.hidden_size}"
    vocabulary = "vocabulary" if config.task == "lm" else "words"
    what = f"batch {shape.batch} x {shape.what}, {layers} hidden, {vocabulary} {shape.words:,}"
    return Estimate(parameters, parameter_bytes, activation_bytes, logit_bytes, what)


def _shape(config: RunConfig, corpus: Any) -> _Shape:
    """The tokens of one step of ``config.task`` on ``corpus`` and its vocabularies' sizes."""
    m, t = config.model, config.train
    if config.task == "lm":
        vocab, tokens = len(corpus.vocab), max(1, corpus.train.numel())
        batch = min(t.batch_size, tokens)  # more columns than tokens: batchify refuses it by name
        bptt = t.bptt + (VARIABLE_BPTT_MARGIN if t.variable_bptt else 0)
        steps = min(bptt, max(1, tokens // batch))  # a window is at most a column's length
        valid = max(1, corpus.valid.numel() if corpus.valid is not None else 0)
        eval_batch = min(t.eval_batch_size, valid)
        eval_tokens = min(t.bptt, max(1, valid // eval_batch)) * eval_batch
        return _Shape(steps, batch, vocab, vocab, steps * batch, 0, 0, f"bptt {steps}", eval_tokens)
    if config.task == "tag":
        sentences = [s.words for s in corpus.train]
        tags = len(corpus.tags)
        extra_parameters = len(corpus.chars) * m.char_embed + (tags * tags + 2 * tags if m.crf else 0)
        steps, batch = _sentence_batch(sentences, t.batch_size)
        extra_activations = 0
        if m.char_embed > 0:  # the characters of (at most) every word of the batch, both ways
            longest_word = max((len(w) for s in sentences for w in s), default=1)
            per_char = m.char_embed + 2 * m.char_hidden * (SAVED_PER_GATE * 4 + SAVED_PER_UNIT)
            extra_activations = steps * batch * longest_word * per_char
        if m.crf:  # the forward algorithm's scores, previous tag x next tag at every token
            extra_activations += steps * batch * tags * tags
        return _Shape(
            steps, batch, len(corpus.words), tags, steps * batch, extra_parameters, extra_activations,
            f"the longest sentence, {steps} words", steps * batch,
        )  # fmt: skip
    sentences = [words for words, _ in corpus.train]
    steps, batch = _sentence_batch(sentences, t.batch_size)
    return _Shape(
        steps, batch, len(corpus.words), corpus.classes, batch, 0, 0,
        f"the longest sentence, {steps} words", steps * batch,
    )  # fmt: skip


def _sentence_batch(sentences: Sequence[Sized], batch_size: int) -> tuple[int, int]:
    """(the longest sentence's length, sentences per batch) of a corpus of sentences."""
    return max((len(s) for s in sentences), default=1), max(1, min(batch_size, len(sentences)))


def _head(config: RunConfig, out: int, shape: _Shape) -> tuple[int, int]:
    """(parameters, activation values per step) of the output layer over ``out`` features."""
    m, vocab = config.model, shape.outputs
    if config.task != "lm" or m.head == "full":
        bias = vocab if (config.task != "lm" or m.head_bias) else 0
        return out * vocab + bias, LOGIT_COPIES * shape.softmax_tokens * vocab
    cutoffs = [c for c in scaled_cutoffs(m, vocab) if 0 < c < vocab] or [vocab]
    bounds = [*cutoffs, vocab]
    parameters = out * (cutoffs[0] + len(cutoffs) - 1) + (cutoffs[0] if m.head_bias else 0)
    for i in range(1, len(bounds)):
        width = max(1, int(out // m.div_value**i))
        parameters += out * width + width * (bounds[i] - bounds[i - 1])
    return parameters, LOGIT_COPIES * shape.softmax_tokens * (cutoffs[0] + len(cutoffs))


def available() -> tuple[int, str] | None:
    """The memory this process may still take, in bytes, and what limits it (the machine's
    available memory, ``ulimit -v``, a container's limit); None where Linux's /proc is not there."""
    limits: list[tuple[int, str]] = []
    meminfo = _read_fields(Path("/proc/meminfo"))
    if "MemAvailable" in meminfo:
        limits.append((meminfo["MemAvailable"], "this machine has {} available"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    status = _read_fields(Path("/proc/self/status"))
    if soft != resource.RLIM_INFINITY and "VmSize" in status:
        limits.append((soft - status["VmSize"], "this process's address-space limit (ulimit -v) leaves {}"))
    cgroup = Path("/sys/fs/cgroup")
    try:
        cap = (cgroup / "memory.max").read_text().strip()
        if cap != "max":
            used = int((cgroup / "memory.current").read_text())
            limits.append((int(cap) - used, "this container's memory limit leaves {}"))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def _read_fields(path: Path) -> dict[str, int]:
    """``Name: 123 kB`` lines of a /proc file, in bytes; empty where it cannot be read."""
    fields = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    return fields


def _gpu_free(device: str) -> tuple[int, str] | None:
    """Free memory of the CUDA device ``device`` names (``auto`` with a GPU, ``cuda:1``), or None."""
    if not (device == "auto" or device.startswith("cuda")):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        free, _ = torch.cuda.mem_get_info(None if device == "auto" else torch.device(device))
    except (RuntimeError, ValueError, AssertionError):
        return None  # a device that is not there: training refuses it by name
    return free, f"{device} has {{}} free"


def check_memory(config: RunConfig, corpus: Any) -> None:
    """Refuse, in one line with the numbers, a run whose training step would not fit in the
    memory of its device (the GPU's free memory, else what this process may still take)."""
    room = _gpu_free(config.train.device) or available()
    if room is None:
        return
    need = estimate(config, corpus)
    limit, where = room
    if need.total <= limit:
        return
    have = where.format(size(max(limit, 0)))
    raise RnnkitError(f"a training step needs {need.describe()}; {have}: {_advice(config, need)}")


def _advice(config: RunConfig, need: Estimate) -> str:
    """What to lower, for the part of the estimate that dominates it."""
    if need.parameter_bytes > need.activation_bytes:
        return "lower model.hidden_size, model.embed_size or data.max_size (the vocabulary)"
    if config.task != "lm":
        return "lower train.batch_size or model.hidden_size (or leave the longest sentences out)"
    if need.logit_bytes > need.activation_bytes / 2:
        return "lower train.batch_size or train.bptt, or use model.head=adaptive"
    return "lower train.batch_size, train.bptt or model.hidden_size"
