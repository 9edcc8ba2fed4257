"""RunDir: the one place that names the files and folders of a run directory.

A run directory, as ``rnnkit train`` writes it::

    run/
      config.json          the RunConfig the model was built and trained with, and its sha256
      .config.json         the same settings as rnnkit last wrote them: what --resume compares
                           an edited config.json with, to name the settings that changed
      data.json            the corpus (--data, --train/--valid/--test paths), written before training
      .lock                held while a training session writes here (removed when it ends)
      vocab.json           a language model's vocabulary
      tokenizer.json       a subword tokenizer, when the run uses one
      tagging.json         a tagger's vocabularies (words, characters, tags)
      classification.json  a classifier's vocabulary and classes
      metrics.jsonl        one JSON object a line: the training log
      learning_curve.png   the loss curves drawn from metrics.jsonl
      summary.json         the final numbers, written when training ends
      best/                the checkpoint with the best validation score
      last/                the latest checkpoint, with the training state --resume loads;
                           each checkpoint folder holds (see rnnkit.training.checkpoint):
        checkpoint.json    the record that names a checkpoint's files (and their sha256):
        model-<step>.safetensors   the weights
        state-<step>.safetensors   (last/ only) optimizer, generators, carried state …
      diagnose/            what ``rnnkit diagnose RUN`` writes by default

Every name lives here and nowhere else; this module does not import torch, so anything (the
CLI's first checks, a tool reading runs) may use it cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rnnkit.errors import RnnkitError

CONFIG = "config.json"
WRITTEN_CONFIG = ".config.json"
DATA = "data.json"
LOCK = ".lock"
VOCAB = "vocab.json"
TOKENIZER = "tokenizer.json"
TAGGING = "tagging.json"
CLASSIFICATION = "classification.json"
METRICS = "metrics.jsonl"
LEARNING_CURVE = "learning_curve.png"
SUMMARY = "summary.json"
BEST = "best"
LAST = "last"
CHECKPOINTS = (BEST, LAST)
"""The checkpoints a run holds, as ``which`` names them."""
RECORD = "checkpoint.json"
DIAGNOSE = "diagnose"

NOT_A_RUN_YET = frozenset({DATA, LOCK})
"""What a directory may hold before its first checkpoint and still be a fresh run: the
training data's description and the lock of the session writing it."""


@dataclass(frozen=True)
class RunDir:
    """A run directory's paths: ``RunDir(path).config`` is ``path / "config.json"`` and so on.

    Naming a path neither reads nor creates anything.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        """``config.json``: the run's configuration."""
        return self.path / CONFIG

    @property
    def written_config(self) -> Path:
        """``.config.json``: the settings as rnnkit last wrote config.json (edits are named against it)."""
        return self.path / WRITTEN_CONFIG

    @property
    def data(self) -> Path:
        """``data.json``: what the training data was."""
        return self.path / DATA

    @property
    def lock(self) -> Path:
        """``.lock``: held by the training session writing here."""
        return self.path / LOCK

    @property
    def vocab(self) -> Path:
        """``vocab.json``: a language model's vocabulary."""
        return self.path / VOCAB

    @property
    def tokenizer(self) -> Path:
        """``tokenizer.json``: the subword tokenizer, if the run has one."""
        return self.path / TOKENIZER

    @property
    def tagging(self) -> Path:
        """``tagging.json``: a tagger's vocabularies."""
        return self.path / TAGGING

    @property
    def classification(self) -> Path:
        """``classification.json``: a classifier's vocabulary and classes."""
        return self.path / CLASSIFICATION

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: the training log."""
        return self.path / METRICS

    @property
    def learning_curve(self) -> Path:
        """``learning_curve.png``: the plot of metrics.jsonl."""
        return self.path / LEARNING_CURVE

    @property
    def summary(self) -> Path:
        """``summary.json``: the final numbers."""
        return self.path / SUMMARY

    @property
    def best(self) -> Path:
        """``best/``: the checkpoint with the best validation score."""
        return self.path / BEST

    @property
    def last(self) -> Path:
        """``last/``: the latest checkpoint, with the state that --resume loads."""
        return self.path / LAST

    @property
    def diagnose(self) -> Path:
        """``diagnose/``: where ``rnnkit diagnose`` writes by default."""
        return self.path / DIAGNOSE

    def checkpoint(self, which: str = BEST) -> Path:
        """The checkpoint folder ``which`` (``best`` or ``last``).

        Raises:
            RnnkitError: ``which`` is neither.
        """
        if which not in CHECKPOINTS:
            raise RnnkitError(f"which must be 'best' or 'last', got {which!r}")
        return self.path / which

    def record(self, which: str = BEST) -> Path:
        """``<which>/checkpoint.json``: the record of checkpoint ``which``."""
        return self.checkpoint(which) / RECORD
