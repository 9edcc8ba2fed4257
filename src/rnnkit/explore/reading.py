"""A text as one run reads it: the tokens shown, the model's input, and one float64 forward pass
recorded for every view of it (:class:`rnnkit.explore.sweep.Recording`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.analysis import gradient_flow as gf
from rnnkit.errors import RnnkitError
from rnnkit.explore.runs import Run
from rnnkit.explore.sweep import Recording
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.tasks.tagging import Tagging
from rnnkit.textsafe import printable

MAX_TOKENS = 1000
"""A text of more tokens is cut to this many, with a note."""

MAX_CHARS = 100_000
"""A text of more characters is cut to this many before it is read, with a note."""

GATE_NAMES = {"i": "input", "f": "forget", "o": "output", "z": "update", "r": "reset"}


class Reading:
    """A text as one run reads it: the tokens shown, what the model reads, and what was
    computed on it so far (``results``, by question)."""

    def __init__(
        self, run: Run, text: str, bases: Callable[[Tensor], Recording | None] | None = None
    ) -> None:
        self.bases = bases
        """Given the input of a recording to make, a recording of another text that shares the most
        of its start (:meth:`rnnkit.explore.sweep.Probe.extend`), or None."""
        self.notes: list[str] = []
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS]
            self.notes.append(f"text cut to its first {MAX_CHARS} characters")
        self.run, self.trained = run, run.model()
        lm = run.kind is LanguageModelling
        raw = self._lm_tokens(text) if lm else text.split()
        if not raw:
            raise RnnkitError("text: no tokens to read; type some text")
        if len(raw) > MAX_TOKENS:
            raw = raw[:MAX_TOKENS]
            self.notes.append(f"text cut to {MAX_TOKENS} tokens")
        if len(raw) + (1 if lm else 0) < 2:
            raise RnnkitError("text: one word; the views need two at least")
        self.raw = raw
        self.results: dict[Any, Any] = {}
        self.recordings: dict[int, Recording] = {}
        if lm:
            vocab, codec = self.trained.vocab, self.trained.codec
            self.oov = [t not in vocab for t in raw] if vocab.unk is not None else [False] * len(raw)
            self.shown = [printable(codec.token_text(t)) for t in raw]
            self.offset = 1 if codec.sentence_end in vocab else 0
        else:
            words = self.trained.vocab
            key = self.trained.task.key
            self.oov = [key(w) not in words for w in raw]
            self.shown = [printable(w) for w in raw]
            self.offset = 0
        self.unknown = list(dict.fromkeys(s for s, o in zip(self.shown, self.oov) if o))

    def _lm_tokens(self, text: str) -> list[str]:
        """A language model's tokens of ``text`` as typed: each finished line as the corpus
        reads it (its sentence end after it), the last line as a prompt (none added)."""
        codec = self.trained.codec
        lines = text.split("\n")
        return [t for line in lines[:-1] for t in codec.line_tokens(line + "\n")] + codec.prompt_tokens(
            lines[-1]
        )

    @property
    def steps(self) -> int:
        return len(self.raw)

    # -- the model's input and per-step losses, as diagnose builds them ---------------------------
    def subject(self, length: int | None = None) -> tuple[torch.Tensor, gf.Loss, int]:
        """(input (L, 1), the per-step losses, how many steps come before the first token) of the
        first ``length`` tokens."""
        words = self.raw[: length or self.steps]
        trained, kind = self.trained, self.run.kind
        if kind is LanguageModelling:
            from rnnkit.inference import as_read

            vocab, codec = trained.vocab, trained.codec
            read, _ = as_read(vocab, words)
            ids = ([vocab.index(codec.sentence_end)] if self.offset else []) + [vocab.index(t) for t in read]
            # one more target after the last token (its loss is never shown): every token is read
            return torch.tensor([*ids, 0])[:, None], gf.lm_loss, self.offset
        if kind is Tagging:
            from rnnkit.data.conll import Sentence

            ids, _, chars, _ = trained.task.tensors([Sentence(words)], with_tags=False)
            return ids, gf.tagger_loss(chars, None), 0
        ids, _, _ = trained.task.tensors([(words, 0)])
        return ids, gf.classifier_loss(None), 0

    def recording(self, length: int | None = None) -> Recording:
        """The float64 forward pass over the first ``length`` tokens (all of them by default),
        every layer-direction recorded: one per text for all the views (kept)."""
        n = min(length or self.steps, self.steps)
        if n not in self.recordings:
            tokens, loss, _ = self.subject(n)
            tokens, probe = tokens.to(self.run.device), self.run.probe()
            base = (
                self.bases(tokens) if self.bases is not None and self.run.kind is LanguageModelling else None
            )
            self.recordings[n] = probe.record(tokens, loss) if base is None else probe.extend(base, tokens)
        return self.recordings[n]

    def trace(self, index: int) -> gf.Trace:
        """Layer-direction ``index``'s float64 trace over the whole text."""
        return self.recording().trace(index)


def step_values(tr: gf.Trace, quantity: str) -> np.ndarray:
    """The quantity at every step of sequence 0 (T, H), in position order."""
    if quantity == "h":
        values = torch.stack([h.detach()[0] for h in tr.hidden])
    elif quantity == "c":
        values = torch.stack([s.c.detach()[0] for s in tr.states])
    else:
        values = gf.gate_values(tr)[GATE_NAMES[quantity]][:, 0]
    return values.double().cpu().numpy()


def value_range(config: Any, quantity: str, values: np.ndarray) -> tuple[float, float]:
    """The quantity's fixed colour range: gates [0, 1]; tanh states [-1, 1]; sigmoid Elman
    states [0, 1]; ReLU (and IRNN) states [0, the largest seen]; an LSTM's c ±its largest |c|."""
    if quantity in GATE_NAMES:
        return 0.0, 1.0
    largest = float(np.abs(values).max()) if values.size else 1.0
    largest = largest if largest > 0 and math.isfinite(largest) else 1.0
    if quantity == "c":
        return -largest, largest
    nonlinearity = (
        "relu" if config.cell == "irnn" else (config.nonlinearity if config.cell == "elman" else "tanh")
    )
    if nonlinearity == "relu":
        return 0.0, largest
    return (0.0, 1.0) if nonlinearity == "sigmoid" else (-1.0, 1.0)
