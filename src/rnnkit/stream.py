"""A language model reading text as it comes: the next-token distribution, with a state to snapshot.

A :class:`Stream` (``rnnkit.load(run).stream()``) reads text in pieces of any size, cut
anywhere (mid-word included), or tokens, and carries the recurrent state from piece to piece.
What it reads scores exactly as the whole text read at once (:func:`rnnkit.inference.score_lines`,
:meth:`rnnkit.models.language_model.LanguageModel.log_prob` over the text's tokens): a piece's
last word is held back until the text after it shows where it ends. At any point it answers
the next-token distribution (:meth:`Stream.next`, :meth:`Stream.log_probs`), and its whole
state (recurrent state, held-back text, running totals) goes to bytes and back
(:meth:`Stream.snapshot`, :meth:`Stream.restore`): safetensors tensors and JSON metadata,
never pickle, bound to the model that took it by a fingerprint of its shapes and weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import safetensors.torch
import torch
from torch import Tensor

from rnnkit.cells.base import LSTMState, SLSTMState, state_kind
from rnnkit.data.lines import LINE_LIMIT
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_bytes_atomic
from rnnkit.inference import LISTED_UNKNOWN, SCORE_WINDOW, _head_log_prob, _perplexity, as_read
from rnnkit.models.language_model import LanguageModel

__all__ = ["FORMAT", "FORMAT_VERSION", "Read", "Stream", "fingerprint"]

FORMAT = "rnnkit-stream"
"""What a snapshot's metadata says it is (``format``)."""

FORMAT_VERSION = 1
"""The snapshot layout this rnnkit writes and reads (``version`` in the metadata)."""

_STATE_KINDS = {"lstm": LSTMState, "slstm": SLSTMState}
"""The named-tuple recurrent states a snapshot holds, by the kind its metadata names."""

_WEIGHTS: weakref.WeakKeyDictionary[LanguageModel, str] = weakref.WeakKeyDictionary()
"""sha256 of each model's weights, computed once per model (a model's weights are fixed
once it is loaded for inference)."""


class Read(NamedTuple):
    """What one call read.

    Attributes:
        tokens: the tokens scored, as the model read them (``<unk>`` for an unknown word).
        logprobs: log P of each of ``tokens`` (nats) given everything read before it.
        unknown: the words read as ``<unk>``, in order, each time it occurs.
    """

    tokens: list[str]
    logprobs: list[float]
    unknown: list[str]

    @property
    def logprob(self) -> float:
        """log P of all the tokens read (nats)."""
        return math.fsum(self.logprobs)

    @property
    def surprisal_bits(self) -> list[float]:
        """-log2 P of each token, as :meth:`rnnkit.inference.LanguageModelRun.score` gives them."""
        return [-x / math.log(2) for x in self.logprobs]


def fingerprint(model: LanguageModel, vocab: Vocab, codec: Codec) -> dict[str, Any]:
    """What binds a snapshot to the model that took it: task, cell, every tensor's dtype and
    shape, the text level, a sha256 of the vocabulary and one of the weights (computed once
    per model)."""
    weights = _WEIGHTS.get(model)
    if weights is None:
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        weights = _WEIGHTS[model] = h.hexdigest()
    cell = model.rnn.cell
    tokens = json.dumps([vocab.tokens, vocab.unk], ensure_ascii=False).encode()
    return {
        "task": "lm",
        "cell": f"{type(cell).__name__}({cell.extra_repr()})",
        "shapes": {name: f"{t.dtype} {list(t.shape)}" for name, t in model.state_dict().items()},
        "level": codec.level,
        "vocab": hashlib.sha256(tokens).hexdigest(),
        "weights": weights,
    }


_NOT_SPACE = frozenset("\x1c\x1d\x1e\x1f")  # str.isspace() says yes; Unicode White_Space (regex \s) no


def _space(c: str) -> bool:
    """Whether ``c`` is whitespace both to ``str.split`` and to the BPE pre-tokenizer's regex."""
    return c.isspace() and c not in _NOT_SPACE


def _settled(text: str, level: str) -> int:
    """How much of ``text`` (part of a line, no newline) reads the same whatever follows it.

    Characters are tokens as they come. A word ends only at whitespace, and a run of
    whitespace is split by what follows it (a byte-level BPE pre-token carries its leading
    space; the whitespace before a special token such as ``<unk>`` stays one token): so the
    text is settled up to its last run of whitespace, which is held back with the word after
    it, if any."""
    if level == "char":
        return len(text)
    end = len(text)
    while end and not _space(text[end - 1]):  # the last word, if the text ends inside one
        end -= 1
    while end and _space(text[end - 1]):  # the whitespace before it
        end -= 1
    return end


def _header(blob: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors blob, or an error saying it is not one."""
    size = int.from_bytes(blob[:8], "little") if len(blob) >= 8 else -1
    if size < 2 or 8 + size > len(blob):
        raise ValueError("too short for its header")
    header = json.loads(blob[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header


class Stream:
    """A language model reading text or tokens incrementally, its recurrent state carried.

    It starts as a fresh line is scored: conditioned on the sentence end (``<eos>`` or a
    newline) when the vocabulary has it. :meth:`feed` text in pieces cut anywhere: complete
    tokens are read at once, a trailing unfinished word (or BPE pre-token) is held back
    (:attr:`pending`) until more text, :meth:`end_line` or :meth:`flush` says where it ends. So
    the tokens, and their log-probabilities, are those of the whole text read at once (a text
    of several lines as one stream, the state carried across its lines, as a corpus is
    evaluated). Unknown words are read as ``<unk>`` and reported (:attr:`Read.unknown`,
    :attr:`oov`, :attr:`unknown`), never silently.

    Args:
        model: the language model, in eval mode (as :func:`rnnkit.load` gives it); one direction.
        vocab: its vocabulary.
        codec: its text <-> tokens.
        limit: the most characters held back: a run of more with no word break is read in
            parts of this many (as :func:`rnnkit.data.lines.split_text` cuts a long line), so an
            endless unbroken string never grows memory without bound.
        window: the most tokens run through the model at once (memory bounded by it, whatever
            the size of a piece).

    Example::

        s = rnnkit.load("runs/ptb").stream()
        s.feed("the cat sat on the ma")   # "ma" is held back: it may go on
        s.feed("t")
        s.end_line()                      # "mat" and <eos> read
        s.next(5), s.perplexity
        blob = s.snapshot()               # later, or in another process:
        s2 = rnnkit.load("runs/ptb").stream(restore=blob)
    """

    def __init__(
        self,
        model: LanguageModel,
        vocab: Vocab,
        codec: Codec,
        *,
        limit: int = LINE_LIMIT,
        window: int = SCORE_WINDOW,
    ) -> None:
        if limit < 8:
            raise RnnkitError(f"a stream's limit must be at least 8 characters, got {limit}")
        if window < 1:
            raise RnnkitError(f"a stream's window must be at least 1 token, got {window}")
        if model.rnn.bidirectional:
            raise RnnkitError("a bidirectional language model reads the text after a token: it cannot stream")
        self.model, self.vocab, self.codec, self.limit, self.window = model, vocab, codec, limit, window
        self.device = next(model.parameters()).device
        self._reset()

    def _reset(self) -> None:
        start = self.codec.sentence_end
        self._ids: list[int] = [self.vocab.index(start)] if start in self.vocab else []  # not yet run
        self._state: Any = None  # the recurrent state after the tokens run (None: the initial one)
        self._h: Tensor | None = None  # (1, H): the features of the last token run
        self._text = ""  # held back: the text after the last settled token
        self._total, self._count, self._oov = 0.0, 0, 0
        self._unknown: dict[str, None] = {}
        self._unknown_left_out = False

    # -- reading ---------------------------------------------------------------------------------
    def feed(self, text: str) -> Read:
        """Read the next piece of text (cut anywhere): every token it settles, scored."""
        if not isinstance(text, str):
            raise RnnkitError(f"feed takes text (a str), got {type(text).__name__}; tokens go to feed_tokens")
        buffer, tokens, at = self._text + text, [], 0
        while (newline := buffer.find("\n", at)) != -1:
            tokens += self.codec.line_tokens(buffer[at : newline + 1])
            at = newline + 1
        rest = buffer[at:]
        cut = _settled(rest, self.codec.level)
        tokens += self.codec.prompt_tokens(rest[:cut]) if cut else []
        rest = rest[cut:]
        while len(rest) > self.limit:  # no word break in sight: read it in parts, memory bounded
            tokens += self.codec.prompt_tokens(rest[: self.limit])
            rest = rest[self.limit :]
        read = self._read(tokens)
        self._text = rest  # once read: a refused token leaves the stream as it was
        return read

    def end_line(self) -> Read:
        """The line ends here: read the held-back text and the line's end (``<eos>`` or a newline)."""
        return self.feed("\n")

    def flush(self) -> Read:
        """The held-back text is complete as it is (the line goes on): read it, as a prompt reads."""
        read = self._read(self.codec.prompt_tokens(self._text) if self._text else [])
        self._text = ""
        return read

    def feed_tokens(self, tokens: Sequence[str]) -> Read:
        """Read ``tokens`` (strings of the model's vocabulary; an unknown one is read as ``<unk>``
        and reported), after any held-back text, which is read first as :meth:`flush` reads it."""
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
            raise RnnkitError("feed_tokens takes a list of tokens (strings); text goes to feed")
        held = self.codec.prompt_tokens(self._text) if self._text else []
        read = self._read(held + list(tokens))
        self._text = ""
        return read

    @torch.no_grad()  # the state carried from call to call must not carry a graph
    def _read(self, tokens: list[str]) -> Read:
        """Run ``tokens`` (and any ids not yet run) through the model, a window at a time,
        scoring each token that has a token before it."""
        read, unknown = as_read(self.vocab, tokens)
        ids = self._ids + [self.vocab.index(t) for t in read]  # first: it refuses a token with no <unk>
        self._oov += len(unknown)
        for word in unknown:
            if word not in self._unknown:
                if len(self._unknown) < LISTED_UNKNOWN:
                    self._unknown[word] = None
                else:
                    self._unknown_left_out = True
        self._ids = []
        values: list[float] = []
        for at in range(0, len(ids), self.window):
            chunk = torch.tensor(ids[at : at + self.window], device=self.device)
            h, self._state = self.model(chunk[:, None], self._state)
            h = h[:, 0]
            if self._h is None:  # the very first token: nothing before it predicts it
                features, targets = h[:-1], chunk[1:]
            else:
                features, targets = torch.cat([self._h, h[:-1]]), chunk
            values += _head_log_prob(self.model, len(self.vocab), features, targets).tolist()
            self._h = h[-1:]
        self._total += math.fsum(values)
        self._count += len(values)
        return Read(read[len(read) - len(values) :] if values else [], values, unknown)

    # -- what comes next -------------------------------------------------------------------------
    @torch.no_grad()
    def log_probs(self) -> Tensor:
        """log P(next token) over the whole vocabulary (|V|,), after the tokens read (not the
        held-back text: :meth:`flush` reads it)."""
        if self._ids:
            self._read([])
        if self._h is None:
            raise RnnkitError("nothing read yet, and the vocabulary has no sentence start to predict from")
        return self.model.head.log_probs(self._h)[0]

    def next(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most probable next tokens with their probabilities, most probable first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RnnkitError(f"k must be a positive integer, got {k!r}")
        probs = self.log_probs().exp()
        top = probs.topk(min(k, probs.numel()))
        return [(self.vocab.tokens[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]

    # -- running totals --------------------------------------------------------------------------
    @property
    def logprob(self) -> float:
        """log P of every token scored so far (nats)."""
        return self._total

    @property
    def token_count(self) -> int:
        """How many tokens were scored so far."""
        return self._count

    @property
    def perplexity(self) -> float:
        """exp(-logprob / token_count) so far (1 before any token)."""
        return _perplexity(self._total, self._count)

    @property
    def oov(self) -> int:
        """How many tokens read were not in the vocabulary (read as ``<unk>``)."""
        return self._oov

    @property
    def unknown(self) -> list[str]:
        """The distinct unknown words read, in the order first seen (the first 100)."""
        return list(self._unknown)

    @property
    def pending(self) -> str:
        """The held-back text: read once what follows it (or :meth:`end_line`, :meth:`flush`) settles it."""
        return self._text

    def __repr__(self) -> str:
        return f"<Stream {self._count} tokens, logprob {self._total:.4g}, {len(self._text)} characters held>"

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The stream's whole state as safetensors bytes: the recurrent state, the features of
        the last token, the held-back ids and text, the running totals and the model's
        :func:`fingerprint` (in the metadata). :meth:`restore` takes it back."""
        tensors: dict[str, Tensor] = {
            "pending_ids": torch.tensor(self._ids, dtype=torch.long),
            "pending_text": torch.tensor(list(self._text.encode("utf-8")), dtype=torch.uint8),
        }
        kind = "none"
        if isinstance(self._state, Tensor):
            kind, tensors["state.h"] = "tensor", self._state
        elif self._state is not None:
            kind = next(k for k, cls in _STATE_KINDS.items() if isinstance(self._state, cls))
            for name, t in zip(self._state._fields, self._state):
                tensors[f"state.{name}"] = t
        if self._h is not None:
            tensors["features"] = self._h
        metadata = {
            "format": FORMAT,
            "version": str(FORMAT_VERSION),
            "model": json.dumps(fingerprint(self.model, self.vocab, self.codec), sort_keys=True),
            "state": kind,
            "logprob": self._total.hex(),
            "token_count": str(self._count),
            "oov": str(self._oov),
            "unknown": json.dumps(list(self._unknown), ensure_ascii=False),
            "unknown_left_out": str(int(self._unknown_left_out)),
        }
        cpu = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
        return safetensors.torch.save(cpu, metadata)

    def restore(self, blob: bytes, source: str = "snapshot") -> None:
        """Take back the state of :meth:`snapshot` (of a stream of this same model); ``source``
        names the blob in errors. Nothing changes unless the whole snapshot is good.

        Raises:
            RnnkitError: in one line: the bytes are not a stream snapshot (truncated, corrupt),
                a snapshot of another format version, or of another model (naming what differs).
        """
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise RnnkitError(
                f"{source}: a snapshot is bytes (what snapshot() returned), got {type(blob).__name__}"
            )
        blob = bytes(blob)
        try:
            metadata = _header(blob).get("__metadata__") or {}
            tensors = safetensors.torch.load(blob)
        except Exception as err:  # safetensors raises its own error type; json a ValueError
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RnnkitError(
                f"{source}: not a stream snapshot, or a truncated or corrupt one ({why})"
            ) from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise RnnkitError(f"{source}: not a stream snapshot (safetensors without format {FORMAT!r})")
        if metadata.get("version") != str(FORMAT_VERSION):
            raise RnnkitError(
                f"{source}: stream snapshot format version {str(metadata.get('version'))[:20]!r}; "
                f"this rnnkit reads version {FORMAT_VERSION}"
            )
        self._check_model(metadata.get("model"), source)
        try:
            values = self._unpack(metadata, tensors)
        except KeyError as err:
            raise RnnkitError(f"{source}: a corrupt stream snapshot (it has no {err.args[0]!r})") from None
        except (ValueError, TypeError) as err:  # UnicodeDecodeError is a ValueError
            raise RnnkitError(f"{source}: a corrupt stream snapshot ({err})") from None
        (self._ids, self._state, self._h, self._text, self._total, self._count, self._oov) = values[:7]
        self._unknown, self._unknown_left_out = values[7:]

    def _check_model(self, recorded: Any, source: str) -> None:
        """Refuse a snapshot whose fingerprint is not this model's, naming the first difference."""
        try:
            theirs = json.loads(recorded)
        except (TypeError, ValueError):
            theirs = None
        if not isinstance(theirs, dict):
            raise RnnkitError(f"{source}: a corrupt stream snapshot (no model fingerprint)")
        ours = fingerprint(self.model, self.vocab, self.codec)
        for key, what in (
            ("task", "task"),
            ("level", "text level"),
            ("cell", "cell"),
            ("shapes", "tensor"),
            ("vocab", "vocabulary sha256"),
            ("weights", "weights sha256"),
        ):
            there, here = theirs.get(key), ours[key]
            if there == here:
                continue
            if key == "shapes" and isinstance(there, dict):
                name = next(n for n in sorted(set(there) | set(here)) if there.get(n) != here.get(n))
                what, there, here = f"tensor {name}", there.get(name, "missing"), here.get(name, "missing")
            elif key in ("vocab", "weights"):
                there, here = f"{str(there)[:12]}...", f"{here[:12]}..."
            raise RnnkitError(
                f"{source}: taken from another model ({what} {str(there)[:80]}; this model's {here})"
            )

    def _unpack(self, metadata: dict[str, Any], tensors: dict[str, Tensor]) -> tuple[Any, ...]:
        """The stream's fields from a snapshot, each checked against this model."""
        rnn, device = self.model.rnn, self.device
        shape = (rnn.num_layers * rnn.num_directions, 1, rnn.hidden_size)
        dtype = next(self.model.parameters()).dtype

        def tensor(name: str, want: tuple[int, ...]) -> Tensor:
            t = tensors[name]
            if tuple(t.shape) != want or t.dtype != dtype:
                raise ValueError(f"{name} is {t.dtype} {list(t.shape)}, expected {dtype} {list(want)}")
            return t.to(device)

        kind = metadata["state"]
        if kind in _STATE_KINDS:
            cls = _STATE_KINDS[kind]
            state: Any = cls(*(tensor(f"state.{name}", shape) for name in cls._fields))
        elif kind == "tensor":
            state = tensor("state.h", shape)
        elif kind == "none":
            state = None
        else:
            raise ValueError(f"state kind {kind!r}")
        if _STATE_KINDS.get(kind) != state_kind(rnn.cell) and kind not in ("none", "tensor"):
            raise ValueError(f"a {kind} state for cell {type(rnn.cell).__name__}")
        if kind == "tensor" and state_kind(rnn.cell) is not None:
            raise ValueError(f"a {kind} state for cell {type(rnn.cell).__name__}")
        projection = self.model.projection
        width = rnn.hidden_size * rnn.num_directions if projection is None else projection.out_features
        h = tensor("features", (1, width)) if "features" in tensors else None
        ids = tensors["pending_ids"]
        if ids.dim() != 1 or ids.dtype != torch.long or len(ids) > 1:
            raise ValueError("pending_ids must be at most one int64 id")
        ids_list = ids.tolist()
        if any(not 0 <= i < len(self.vocab) for i in ids_list):
            raise ValueError("a pending id outside the vocabulary")
        text = bytes(tensors["pending_text"].numpy()).decode("utf-8")
        if len(text) > self.limit:
            raise ValueError(f"{len(text)} characters held back, over this stream's limit of {self.limit}")
        unknown = json.loads(metadata["unknown"])
        if not isinstance(unknown, list) or not all(isinstance(w, str) for w in unknown):
            raise ValueError("unknown must be a list of words")
        total, count, oov = (
            float.fromhex(metadata["logprob"]),
            int(metadata["token_count"]),
            int(metadata["oov"]),
        )
        if count < 0 or oov < 0:
            raise ValueError("negative counts")
        left_out = metadata["unknown_left_out"] == "1"
        return ids_list, state, h, text, total, count, oov, dict.fromkeys(unknown), left_out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`snapshot` to ``path`` atomically (a crash leaves the old file or the new one)."""
        write_bytes_atomic(path, self.snapshot())

    def load(self, path: str | os.PathLike[str]) -> None:
        """:meth:`restore` the snapshot in the file ``path`` (as :meth:`save` wrote it)."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise RnnkitError(f"{path}: no such stream snapshot") from None
        except OSError as err:
            raise RnnkitError(f"{path}: cannot read the stream snapshot ({err.strerror})") from None
        self.restore(blob, str(path))
