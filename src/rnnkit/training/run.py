"""Run directories: what a trained run holds, and loading it back with no flags."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open

from rnnkit.config import RunConfig, from_dict
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json
from rnnkit.models.config import build_model
from rnnkit.models.language_model import LanguageModel
from rnnkit.training.checkpoint import check_format, load_checkpoint, read_record


def read_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    data = read_json(
        path, missing=f"{run_dir}: not a run directory (missing config.json)", what="run configuration"
    )
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("head") == "adaptive" and "div_value" not in model:
        # Saved before model.div_value existed, when the adaptive head had no bias whatever
        # model.head_bias said: build the network its checkpoints hold.
        data = {**data, "model": {**model, "head_bias": False}}
    return from_dict(data, str(path))


class Trained(NamedTuple):
    """A trained run, ready to score or generate: ``model, vocab, config, codec = load(run)``."""

    model: LanguageModel
    vocab: Vocab
    config: RunConfig
    codec: Codec


def load(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Trained:
    """The trained model (in eval mode, on ``device``), its vocabulary, configuration and codec.

    Works for a run trained on a GPU and loaded on a CPU: weights are plain tensors.
    """
    if which not in ("best", "last"):
        raise RnnkitError(f"which must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.task != "lm":
        raise RnnkitError(f"{run_dir}: a {config.task!r} run; this needs a language model (task 'lm')")
    vocab = Vocab.load(run_dir / "vocab.json")
    model = build_model(config.model, len(vocab))
    _check_vocab_size(run_dir / which, len(vocab))
    load_checkpoint(run_dir / which, model)
    return Trained(model.to(device).eval(), vocab, config, Codec.load(run_dir, config.data.level))


def _check_vocab_size(checkpoint: Path, size: int) -> None:
    """vocab.json and the weights must agree on |V| (say so, rather than a shape error)."""
    record = read_record(checkpoint)
    name = record.get("weights")
    if not isinstance(name, str):
        return
    try:
        with safe_open(str(checkpoint / Path(name).name), framework="pt") as f:
            check_format(f.metadata(), checkpoint / Path(name).name)  # a newer rnnkit's: say so first
            names = f.keys()
            if "embedding.weight" in names:
                rows = f.get_slice("embedding.weight").get_shape()[0]
                if rows != size:
                    raise RnnkitError(
                        f"{checkpoint.parent / 'vocab.json'} has {size} tokens but the weights in "
                        f"{checkpoint} were trained for {rows}: the vocabulary does not belong to this run"
                    )
    except (OSError, SafetensorError):
        return  # load_checkpoint names the file's problem precisely
