"""Checkpoints are data: safetensors weights + a JSON record, written so a crash never corrupts one.

A checkpoint directory holds ``checkpoint.json`` and the weights file it names
(``model-<step>.safetensors``). Saving writes the new weights under a new name, then
atomically replaces ``checkpoint.json`` to point at them, then deletes the old weights:
killed at any moment, the directory still holds one complete, consistent checkpoint.
Loading reads JSON and safetensors only (never pickle) and checks the weights' sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import safetensors.torch
from safetensors import SafetensorError
from torch import nn

from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic

RECORD = "checkpoint.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, record: dict, step: int) -> None:
    """Save ``model``'s weights and ``record`` (JSON-able) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old = _current_weights(directory)
    name = f"model-{step:09d}.safetensors"
    tmp = directory / f".{name}.tmp"
    safetensors.torch.save_model(model, str(tmp))  # handles tied (shared) weights
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, directory / name)
    full = {**record, "weights": name, "weights_sha256": _sha256(directory / name)}
    write_text_atomic(directory / RECORD, json.dumps(full, indent=1, allow_nan=True) + "\n")
    if old is not None and old != name:
        (directory / old).unlink(missing_ok=True)


def _current_weights(directory: Path) -> str | None:
    try:
        return json.loads((directory / RECORD).read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        return None


def read_record(directory: str | os.PathLike) -> dict:
    """The JSON record of the checkpoint in ``directory``, checked to name existing weights."""
    directory = Path(directory)
    path = directory / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnkitError(f"{directory}: no checkpoint here (missing {RECORD})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: corrupted checkpoint record ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("weights"), str):
        raise RnnkitError(f"{path}: not a checkpoint record (no 'weights' entry)")
    if Path(record["weights"]).name != record["weights"]:
        raise RnnkitError(f"{path}: 'weights' must be a file name in the checkpoint directory")
    return record


def load_checkpoint(directory: str | os.PathLike, model: nn.Module) -> dict:
    """Load the weights saved in ``directory`` into ``model``; return the record."""
    directory = Path(directory)
    record = read_record(directory)
    weights = directory / record["weights"]
    if not weights.is_file():
        raise RnnkitError(f"{weights}: the checkpoint's weights file is missing")
    if record.get("weights_sha256") != _sha256(weights):
        raise RnnkitError(
            f"{weights}: sha256 does not match {RECORD}: the weights are corrupted or truncated"
        )
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(weights), strict=False)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise RnnkitError(
            f"{weights}: cannot load these weights into the model ({str(err).splitlines()[0]})"
        ) from None
    if missing or unexpected:
        raise RnnkitError(
            f"{weights}: does not match the model "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return record
