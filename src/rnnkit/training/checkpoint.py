"""Checkpoints are data: safetensors tensors + a JSON record, written so a crash never corrupts one.

A checkpoint directory holds ``checkpoint.json`` and the files it names: the model's
weights (``model-<step>.safetensors``) and, for resuming, the training state
(``state-<step>.safetensors``: optimizer, RNG and carried hidden state). Saving writes
the new files under new names, then atomically replaces ``checkpoint.json`` to point at
them, then deletes every file it does not name (the old ones, and what a killed save
left): killed at any moment, the directory still holds one complete, consistent
checkpoint; a save that fails (disk full, read-only) leaves the previous one as it was.
Loading reads JSON and safetensors only (never pickle) and checks every file's sha256
against the record. A reader racing a save (``rnnkit evaluate RUN --checkpoint last`` while
the run trains) may read the old record and find its files already deleted: it reads the
new record and tries again.

Every safetensors file carries the checkpoint format in its metadata (``rnnkit_format``,
beside the ecosystem's ``format: pt``): files written before it existed have none and load
as format 0; a file of a format newer than this rnnkit reads is refused in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from rnnkit.errors import RnnkitError
from rnnkit.fileio import WriteError, read_json, reason, write_bytes_atomic, write_text_atomic
from rnnkit.training.rundir import RECORD as RECORD  # re-exported: the record a checkpoint directory holds

FORMAT = 1
"""The checkpoint format this rnnkit writes and the newest it reads; raise it when a change
makes older rnnkit versions misread new checkpoints."""
FORMAT_KEY = "rnnkit_format"
READ_ATTEMPTS = 5
"""How many times a reader reads a checkpoint whose files a concurrent save keeps replacing."""


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    record: dict[str, Any],
    step: int,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save ``model``'s weights, optional ``extra`` tensors (training state) and ``record``.

    Raises:
        WriteError: the files could not be written (disk full, read-only directory …): the
            previous checkpoint in ``directory`` is left as it was (the message says whether
            there was one), and nothing of this save remains.
    """
    directory = Path(directory)
    previous = _saved_step(directory)
    created = not directory.exists()
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        full = dict(record)
        for key, prefix, tensors in (("weights", "model", model.state_dict()), ("state", "state", extra)):
            if tensors is None:
                continue
            name = f"{prefix}-{step:09d}.safetensors"
            if (directory / name).exists():  # saved twice at one step: never overwrite a live file
                name = f"{prefix}-{step:09d}-{secrets.token_hex(4)}.safetensors"
            # Clones break sharing (tied weights), which safetensors refuses; loading copies back.
            data = safetensors.torch.save(
                {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()},
                metadata={"format": "pt", FORMAT_KEY: str(FORMAT)},
            )
            write_bytes_atomic(directory / name, data)
            written.append(directory / name)
            full[key], full[f"{key}_sha256"] = name, hashlib.sha256(data).hexdigest()
        write_text_atomic(directory / RECORD, json.dumps(full, indent=1, allow_nan=True) + "\n")
    except (OSError, WriteError) as err:
        _undo_save(directory, written, created)
        why = err.reason if isinstance(err, WriteError) else reason(err)
        if previous is None:
            intact = "no checkpoint was written (there was none before)"
        else:
            intact = f"the previous checkpoint there{previous} is intact"
        raise WriteError(
            f"{directory}: cannot save the checkpoint of step {step} ({why}); {intact}", directory, why
        ) from None
    _remove_unreferenced(directory, {full.get("weights"), full.get("state")})


def _saved_step(directory: Path) -> str | None:
    """None when ``directory`` holds no checkpoint; else `` (step N)``, or nothing when its
    record does not say."""
    path = directory / RECORD
    if not path.is_file():
        return None
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            return f" (step {record['step']})"
    return ""


def _undo_save(directory: Path, written: list[Path], created: bool) -> None:
    """Remove what a failed save wrote: its files, and ``directory`` if the save created it."""
    with contextlib.suppress(OSError):
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            directory.rmdir()


def _remove_unreferenced(directory: Path, keep: set[str | None]) -> None:
    """Delete checkpoint files the record no longer names: the previous save's, and any a
    killed save left behind (half-written temporary files, files it never pointed to)."""
    for path in directory.iterdir():
        name = path.name
        ours = name.endswith(".safetensors") and name.startswith(("model-", "state-"))
        leftover = name.startswith(".") and name.endswith(".tmp")
        if (ours and name not in keep) or leftover:
            with contextlib.suppress(OSError):  # what stays is removed by the next save
                path.unlink(missing_ok=True)


def read_record(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record of the checkpoint in ``directory``, checked to name existing weights."""
    directory = Path(directory)
    path = directory / RECORD
    record = read_json(
        path, missing=f"{directory}: no checkpoint here (missing {RECORD})", what="checkpoint record"
    )
    if not isinstance(record, dict) or not isinstance(record.get("weights"), str):
        raise RnnkitError(f"{path}: not a checkpoint record (no 'weights' entry)")
    return record


class _MissingFileError(RnnkitError):
    """A file the record names is not there: deleted by a save since the record was read, or lost."""


def _read(
    directory: Path, keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """The record of the checkpoint in ``directory`` and the tensors of each of its ``keys``
    that it names, all of one save.

    A save replaces the record, then deletes the files of the one before: a reader that read
    the old record finds them gone. It then reads the record again; if a save did replace
    it, it tries again (at most :data:`READ_ATTEMPTS` times, a little longer after each); if
    not, the file is really missing.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        record = read_record(directory)
        try:
            return record, {key: _verified(directory, record, key) for key in keys if key in record}
        except _MissingFileError:
            if attempt == READ_ATTEMPTS or _same_record(directory, record):
                raise
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _same_record(directory: Path, record: dict[str, Any]) -> bool:
    """Whether ``directory``'s record is still ``record`` (no save replaced it)."""
    try:
        return read_record(directory) == record
    except RnnkitError:
        return True


def _verified(directory: Path, record: dict[str, Any], key: str) -> dict[str, torch.Tensor]:
    """Read the safetensors file the record names under ``key``, after checking its sha256."""
    name = record.get(key)
    if not isinstance(name, str) or Path(name).name != name:
        raise RnnkitError(f"{directory / RECORD}: '{key}' must be a file name in the checkpoint directory")
    path = directory / name
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise _MissingFileError(f"{path}: the checkpoint's {key} file is missing") from None
    except IsADirectoryError:
        raise RnnkitError(f"{path}: the checkpoint's {key} file is a directory") from None
    except OSError as err:
        raise RnnkitError(f"{path}: cannot read the checkpoint's {key} file ({reason(err)})") from None
    if record.get(f"{key}_sha256") != hashlib.sha256(data).hexdigest():
        raise RnnkitError(f"{path}: sha256 does not match {RECORD}: the file is corrupted or truncated")
    check_format(_metadata(data), path)
    try:
        return safetensors.torch.load(data)
    except (SafetensorError, ValueError) as err:
        raise RnnkitError(
            f"{path}: cannot load these weights into the model (not safetensors: {err})"
        ) from None


def _metadata(data: bytes) -> dict[str, Any]:
    """The ``__metadata__`` of a safetensors file's header (8 bytes of length, then JSON);
    {} when there is none or the header does not parse (loading then says what is wrong)."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError:
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def check_format(metadata: Mapping[str, Any] | None, path: str | os.PathLike[str]) -> int:
    """The checkpoint format in a safetensors file's ``metadata`` (0: written before formats
    were recorded). Raises RnnkitError for a format newer than this rnnkit reads."""
    value = (metadata or {}).get(FORMAT_KEY)
    if value is None:
        return 0
    try:
        found = int(value)
    except ValueError:
        found = None
    if found is None or found < 0:
        raise RnnkitError(f"{path}: unknown checkpoint format {value!r} (this rnnkit reads 0 to {FORMAT})")
    if found > FORMAT:
        from rnnkit import __version__

        raise RnnkitError(
            f"{path}: checkpoint format {found} is newer than rnnkit {__version__} reads (up to {FORMAT}): "
            "upgrade rnnkit to load it"
        )
    return found


def verify_checkpoint(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that the checkpoint in ``directory`` is whole: its record parses and every
    file it names is there, matches its sha256 and reads as safetensors. Returns the record.
    """
    record, _ = _read(Path(directory), ("weights", "state"))
    return record


def load_checkpoint(directory: str | os.PathLike[str], model: nn.Module) -> dict[str, Any]:
    """Load the weights saved in ``directory`` into ``model``; return the record.

    Weights of another architecture (other names or shapes: a different cell, size,
    depth or vocabulary) are refused with what differs, before anything is copied.
    """
    directory = Path(directory)
    record, read = _read(directory, ("weights",))
    tensors = read["weights"]
    differences = weight_differences(tensors, model.state_dict())
    if differences:
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise RnnkitError(
            f"{directory}: these weights belong to a different model: {'; '.join(differences[:3])}{more}"
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise RnnkitError(f"{directory}: cannot load these weights into the model ({first})") from None
    return record


def weight_differences(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``saved`` from loading as ``expected`` (a state dict): one phrase per
    tensor of another shape or kind, then the missing and the unexpected names."""
    out = []
    for name in sorted(saved.keys() & expected.keys()):
        got, want = saved[name], expected[name]
        if got.shape != want.shape:
            out.append(f"{name} is {list(got.shape)} in the file, {list(want.shape)} in the model")
        elif got.is_floating_point() != want.is_floating_point():
            out.append(f"{name} is {got.dtype} in the file, {want.dtype} in the model")
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    for names, what in ((missing, "missing"), (unexpected, "unexpected")):
        if names:
            rest = f" (+{len(names) - 3})" if len(names) > 3 else ""
            out.append(f"{what} {', '.join(names[:3])}{rest}")
    return out


def load_state(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The record and the training-state tensors of the checkpoint in ``directory``."""
    directory = Path(directory)
    record, read = _read(directory, ("state",))
    if "state" not in record:
        raise RnnkitError(f"{directory}: this checkpoint holds no training state to resume from")
    return record, read["state"]
