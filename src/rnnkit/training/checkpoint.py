"""Checkpoints are data: safetensors tensors + a JSON record, written so a crash never corrupts one.

A checkpoint directory holds ``checkpoint.json`` and the files it names: the model's
weights (``model-<step>.safetensors``) and, for resuming, the training state
(``state-<step>.safetensors``: optimizer, RNG and carried hidden state). Saving writes
the new files under new names, then atomically replaces ``checkpoint.json`` to point at
them, then deletes the old ones: killed at any moment, the directory still holds one
complete, consistent checkpoint. Loading reads JSON and safetensors only (never pickle)
and checks every file's sha256 against the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json, write_bytes_atomic, write_text_atomic

RECORD = "checkpoint.json"


def save_checkpoint(
    directory: str | os.PathLike,
    model: nn.Module,
    record: dict,
    step: int,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save ``model``'s weights, optional ``extra`` tensors (training state) and ``record``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    old = _current_files(directory)
    full = dict(record)
    for key, prefix, tensors in (("weights", "model", model.state_dict()), ("state", "state", extra)):
        if tensors is None:
            continue
        name = f"{prefix}-{step:09d}.safetensors"
        # Clones break sharing (tied weights), which safetensors refuses; loading copies back.
        data = safetensors.torch.save({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()})
        write_bytes_atomic(directory / name, data)
        full[key], full[f"{key}_sha256"] = name, hashlib.sha256(data).hexdigest()
    write_text_atomic(directory / RECORD, json.dumps(full, indent=1, allow_nan=True) + "\n")
    for name in old - {full.get("weights"), full.get("state")}:
        (directory / name).unlink(missing_ok=True)


def _current_files(directory: Path) -> set[str]:
    try:
        record = json.loads((directory / RECORD).read_text())
        return {record[k] for k in ("weights", "state") if isinstance(record.get(k), str)}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def read_record(directory: str | os.PathLike) -> dict:
    """The JSON record of the checkpoint in ``directory``, checked to name existing weights."""
    directory = Path(directory)
    path = directory / RECORD
    record = read_json(
        path, missing=f"{directory}: no checkpoint here (missing {RECORD})", what="checkpoint record"
    )
    if not isinstance(record, dict) or not isinstance(record.get("weights"), str):
        raise RnnkitError(f"{path}: not a checkpoint record (no 'weights' entry)")
    return record


def _verified(directory: Path, record: dict, key: str) -> dict[str, torch.Tensor]:
    """Read the safetensors file the record names under ``key``, after checking its sha256."""
    name = record.get(key)
    if not isinstance(name, str) or Path(name).name != name:
        raise RnnkitError(f"{directory / RECORD}: '{key}' must be a file name in the checkpoint directory")
    path = directory / name
    if not path.is_file():
        raise RnnkitError(f"{path}: the checkpoint's {key} file is missing")
    data = path.read_bytes()
    if record.get(f"{key}_sha256") != hashlib.sha256(data).hexdigest():
        raise RnnkitError(f"{path}: sha256 does not match {RECORD}: the file is corrupted or truncated")
    try:
        return safetensors.torch.load(data)
    except (SafetensorError, ValueError) as err:
        raise RnnkitError(
            f"{path}: cannot load these weights into the model (not safetensors: {err})"
        ) from None


def load_checkpoint(directory: str | os.PathLike, model: nn.Module) -> dict:
    """Load the weights saved in ``directory`` into ``model``; return the record."""
    directory = Path(directory)
    record = read_record(directory)
    tensors = _verified(directory, record, "weights")
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise RnnkitError(f"{directory}: cannot load these weights into the model ({first})") from None
    if missing or unexpected:
        raise RnnkitError(
            f"{directory}: the weights do not match the model "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return record


def load_state(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The record and the training-state tensors of the checkpoint in ``directory``."""
    directory = Path(directory)
    record = read_record(directory)
    if "state" not in record:
        raise RnnkitError(f"{directory}: this checkpoint holds no training state to resume from")
    return record, _verified(directory, record, "state")
