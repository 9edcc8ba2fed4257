"""rnnkit: recurrent neural networks on text, exactly as the CS224N lecture writes them, and fast."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from rnnkit.errors import RnnkitError

try:
    __version__ = version("rnnkit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

# The public names live in modules that import torch (about 2 s). They are imported on
# first use, so ``rnnkit --help`` and argument errors answer without loading torch.
_LAZY = {
    "CELLS": "rnnkit.registry",
    "rnn": "rnnkit.registry",
    "RNN": "rnnkit.layers",
    "ElmanCell": "rnnkit.cells",
    "GRUCell": "rnnkit.cells",
    "LSTMCell": "rnnkit.cells",
    "LayerNormLSTMCell": "rnnkit.cells",
    "MinGRUCell": "rnnkit.cells",
    "MinLSTMCell": "rnnkit.cells",
    "LSTMState": "rnnkit.cells",
    "SLSTMCell": "rnnkit.cells",
    "SLSTMState": "rnnkit.cells",
    "detach_state": "rnnkit.cells",
    "irnn_cell": "rnnkit.cells",
}

if TYPE_CHECKING:
    import torch

    from rnnkit.cells import (
        ElmanCell,
        GRUCell,
        LayerNormLSTMCell,
        LSTMCell,
        LSTMState,
        MinGRUCell,
        MinLSTMCell,
        SLSTMCell,
        SLSTMState,
        detach_state,
        irnn_cell,
    )
    from rnnkit.inference import Trained
    from rnnkit.layers import RNN
    from rnnkit.registry import CELLS, rnn


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later look-ups do not come back here
        return value
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load(run_dir: str | os.PathLike[str], which: str = "best", device: str | torch.device = "cpu") -> Trained:
    """A trained run of any task, rebuilt from its directory with no flags (the model in eval
    mode on ``device``; ``which``: the ``best`` or ``last`` checkpoint).

    For a language model: ``generate``, ``score`` and ``next``; for a tagger: ``tag``; for a
    classifier: ``classify`` (every class's probability). Every run has
    ``model``, ``config``, ``vocab`` and ``codec``, and unpacks as before:
    ``model, vocab, config, codec = rnnkit.load(run)``. See :mod:`rnnkit.inference`.
    """
    from rnnkit.inference import load as load_run

    return load_run(run_dir, which, device)


__all__ = [
    "CELLS",
    "RNN",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "LayerNormLSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "RnnkitError",
    "SLSTMCell",
    "SLSTMState",
    "__version__",
    "detach_state",
    "irnn_cell",
    "load",
    "rnn",
]
