"""Run directories: what a trained run holds, and loading it back with no flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open

from rnnkit.config import RunConfig, from_dict
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json
from rnnkit.training.checkpoint import check_format, read_record
from rnnkit.training.rundir import CONFIG, DATA, RunDir

if TYPE_CHECKING:
    from rnnkit.inference import Trained


def read_config(run_dir: str | Path) -> RunConfig:
    path = RunDir(run_dir).config
    data = read_json(
        path, missing=f"{run_dir}: not a run directory (missing {CONFIG})", what="run configuration"
    )
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("head") == "adaptive" and "div_value" not in model:
        # Saved before model.div_value existed, when the adaptive head had no bias whatever
        # model.head_bias said: build the network its checkpoints hold.
        data = {**data, "model": {**model, "head_bias": False}}
    return from_dict(data, str(path))


def recorded_data(run: Path) -> dict[str, str | None]:
    """The corpus a run was trained on, as ``rnnkit train`` recorded it in data.json."""
    try:
        data = json.loads(RunDir(run).data.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RnnkitError(
            f"{run}: cannot read {DATA}, where the run's corpus is recorded ({err}); pass --data"
        ) from None
    if not isinstance(data, dict):
        raise RnnkitError(f"{RunDir(run).data}: not a record of the run's corpus; pass --data")
    return {k: data.get(k) for k in ("data", "train", "valid", "test")}


def load(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> Trained:
    """:func:`rnnkit.inference.load` (kept here for older imports)."""
    from rnnkit.inference import load as load_run  # inference sits above training

    return load_run(run_dir, which, device)


def check_vocab_size(checkpoint: Path, size: int) -> None:
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
                        f"{RunDir(checkpoint.parent).vocab} has {size} tokens but the weights in "
                        f"{checkpoint} were trained for {rows}: the vocabulary does not belong to this run"
                    )
    except (OSError, SafetensorError):
        return  # load_checkpoint names the file's problem precisely
