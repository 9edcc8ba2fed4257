"""A trained model as a folder that needs nothing else: ``rnnkit export RUN --out DIR``.

A run directory holds more than a model (the training log, the resumable ``last/`` state,
the corpus's path on the machine that trained it) and its ``best/`` holds only weights.
The exported folder is a run directory cut down to what loading needs, so
:func:`rnnkit.load` and every command that takes a run read it as they read a run::

    DIR/
      config.json      the settings the model was built with (and their sha256)
      vocab.json | tokenizer.json | tagging.json | classification.json   what the run had
      best/            the checkpoint exported (record + weights, sha256 checked on copy)
      export.json      format version, task, which checkpoint, the figures it reached and a
                       description of its data that names no path of the training machine

There is no ``data.json``: an exported model evaluates the files given with ``--data``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.errors import RnnkitError
from rnnkit.fileio import make_dir, write_text_atomic
from rnnkit.training.rundir import (
    BEST,
    CLASSIFICATION,
    CONFIG,
    DATA,
    RECORD,
    TAGGING,
    TOKENIZER,
    VOCAB,
    RunDir,
)

FOLDER_FORMAT = 1
"""The version of the exported folder's layout (``export.json``'s ``format``)."""

MANIFEST = "export.json"

_VOCABULARIES = (VOCAB, TOKENIZER, TAGGING, CLASSIFICATION)


@dataclass(frozen=True)
class FolderExport:
    """What :func:`export_folder` wrote: the folder, the task and the files in it."""

    path: Path
    task: str
    files: tuple[str, ...]

    def lines(self) -> list[str]:
        """What the CLI prints: where the folder is and how to use it."""
        return [
            f"exported the {self.task!r} model to {self.path} ({', '.join(self.files)})",
            f"load it with rnnkit.load({str(self.path)!r}), or give {self.path} to any rnnkit verb",
        ]


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when it is missing, unreadable or not an object:
    what an export copies from the run's records is descriptive, never a reason to fail."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def describe_data(run: Path) -> dict[str, Any]:
    """The run's corpus as file names only (no directory of the training machine), or
    ``{}`` when the run recorded none."""
    recorded = _json_object(RunDir(run).data)
    out = {}
    for key in ("data", "train", "valid", "test"):
        value = recorded.get(key)
        if isinstance(value, str) and value:
            out[key] = Path(value).name
    return out


def _figures(run: Path) -> dict[str, Any]:
    """The figures of ``summary.json`` (without the run's facts, which hold local paths)."""
    summary = _json_object(RunDir(run).summary)
    return {k: v for k, v in summary.items() if k != "run" and isinstance(v, dict)}


def export_folder(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], which: str = BEST,
                  force: bool = False) -> FolderExport:  # fmt: skip
    """Write the model of ``run_dir``'s checkpoint ``which`` to the folder ``out``.

    The checkpoint's weights are verified (their sha256 against the record, the model
    rebuilt from them) before anything is written. ``out`` must not exist, unless ``force``
    and it is an earlier export (a folder holding ``export.json``), which is replaced.

    Raises:
        RnnkitError: one line, for a run that does not load (missing files, weights that fail
            their checksum) or an ``out`` that exists.
    """
    from rnnkit import __version__
    from rnnkit.inference import load

    run, target = Path(run_dir), Path(out)
    earlier_export = target.is_dir() and (target / MANIFEST).is_file()
    if (target.exists() or target.is_symlink()) and not (force and earlier_export):
        hint = "; --force replaces an earlier export" if earlier_export else ""
        raise RnnkitError(f"--out {target}: exists{hint}")
    trained = load(run, which=which)  # checks the weights' sha256 and that they fit the model
    source = RunDir(run).checkpoint(which)
    record = json.loads((source / RECORD).read_text(encoding="utf-8"))
    make_dir(target.parent, "--out")
    staging = target.parent / f".{target.name}.export"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        make_dir(staging / BEST, "--out")
        files = [CONFIG]
        shutil.copyfile(RunDir(run).config, staging / CONFIG)
        for name in _VOCABULARIES:
            if (run / name).is_file():
                shutil.copyfile(run / name, staging / name)
                files.append(name)
        shutil.copyfile(source / record["weights"], staging / BEST / record["weights"])
        checkpoint = {k: v for k, v in record.items() if not k.startswith("state")}
        write_text_atomic(staging / BEST / RECORD, json.dumps(checkpoint, indent=1) + "\n")
        files.append(BEST + "/")
        manifest = {
            "format": FOLDER_FORMAT,
            "rnnkit": __version__,
            "task": trained.config.task,
            "checkpoint": {"which": which, "step": record.get("step"), "epoch": record.get("epoch")},
            "figures": _figures(run),
            "data": describe_data(run),
        }
        write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        files.append(MANIFEST)
        load(staging)  # the folder loads on its own before it takes the name
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as err:
        raise RnnkitError(f"--out {target}: cannot write the export ({err.strerror or err})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FolderExport(target, trained.config.task, tuple(files))


def is_export(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an exported folder (rather than a run directory)."""
    return (Path(path) / MANIFEST).is_file() and not (Path(path) / DATA).exists()


__all__ = ["FOLDER_FORMAT", "MANIFEST", "FolderExport", "describe_data", "export_folder", "is_export"]
