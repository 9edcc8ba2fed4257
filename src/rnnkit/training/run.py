"""Run directories: what a trained run holds, and loading it back with no flags."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open

from rnnkit.config import RunConfig, from_dict, settings, to_dict
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json, write_text_atomic
from rnnkit.training.checkpoint import check_format, read_record
from rnnkit.training.rundir import CONFIG, DATA, WRITTEN_CONFIG, RunDir

if TYPE_CHECKING:
    from rnnkit.inference import Trained

SHA256 = "sha256"
"""The key of config.json that holds :func:`settings_sha256` of the settings beside it."""

REGULARISERS = frozenset(
    f"model.{name}"
    for name in (
        "dropout",
        "input_dropout",
        "layer_dropout",
        "embedding_dropout",
        "weight_drop",
        "locked_dropout",
    )
)
"""The model settings a resumed run may change (with ``--accept-edits``): they drop units in
training and leave the network's weights as they are. The ``train.*`` settings may change
too but for :data:`KEPT_ON_RESUME`; the task, every other model setting and every data
setting may not (the checkpoint's weights and the vocabulary were made with them)."""

KEPT_ON_RESUME = frozenset({"train.optimizer", "train.batch_size"})
"""The training settings a resumed run keeps: ``last/`` holds that optimizer's state, and the
state carried between windows and the place in the epoch are for that batch size."""


def _config_json(run_dir: str | Path) -> Any:
    """config.json as parsed JSON (anything: the callers say what they expected)."""
    path = RunDir(run_dir).config
    try:
        return read_json(
            path, missing=f"{run_dir}: not a run directory (missing {CONFIG})", what="run configuration"
        )
    except RecursionError:  # json's parser recurses once per nested bracket
        raise RnnkitError(f"{path}: corrupted run configuration (nested too deeply)") from None


def read_config(run_dir: str | Path) -> RunConfig:
    """The settings a run was built and trained with, from its config.json (its sha256 aside)."""
    path = RunDir(run_dir).config
    data = _config_json(run_dir)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != SHA256}
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and model.get("head") == "adaptive" and "div_value" not in model:
        # Saved before model.div_value existed, when the adaptive head had no bias whatever
        # model.head_bias said: build the network its checkpoints hold.
        data = {**data, "model": {**model, "head_bias": False}}
    return from_dict(data, str(path))


def settings_sha256(config: RunConfig) -> str:
    """Hex sha256 of the canonical JSON of ``config``'s resolved settings (keys sorted, no
    spaces): the same settings give the same hash however config.json was laid out."""
    text = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_config(run_dir: str | Path, config: RunConfig) -> None:
    """Write config.json (the settings and their :func:`settings_sha256`), then .config.json
    (the same settings: what an edit of config.json is named against on ``--resume``)."""
    paths, values = RunDir(run_dir), to_dict(config)
    write_text_atomic(paths.config, json.dumps({**values, SHA256: settings_sha256(config)}, indent=1) + "\n")
    write_text_atomic(paths.written_config, json.dumps(values, indent=1) + "\n")


@dataclass(frozen=True)
class Edits:
    """How a run's config.json differs from the settings rnnkit wrote there.

    Args:
        path: the config.json.
        changes: ``(setting, as written, now)`` for each setting that changed, in
            ``rnnkit config``'s order; empty when config.json's sha256 says it changed but
            the settings as written are not known.
        unknown: why they are not known (when ``changes`` is empty).
    """

    path: Path
    changes: tuple[tuple[str, Any, Any], ...]
    unknown: str = ""

    def __str__(self) -> str:
        if not self.changes:
            return f"which settings changed is not known ({self.unknown})"
        return describe_changes(self.changes)

    def fixed(self) -> tuple[tuple[str, Any, Any], ...]:
        """The changes a resumed run cannot take (see :data:`REGULARISERS`)."""
        return tuple(c for c in self.changes if not changeable_on_resume(c[0]))


def changeable_on_resume(name: str) -> bool:
    """Whether a resumed run may take a new value of the setting ``name`` (``train.lr``)."""
    return (name.startswith("train.") and name not in KEPT_ON_RESUME) or name in REGULARISERS


def describe_changes(changes: tuple[tuple[str, Any, Any], ...] | list[tuple[str, Any, Any]]) -> str:
    """``train.lr 1.0 -> 20.0, train.epochs 2 -> 4``: values as JSON (control characters escaped)."""
    return ", ".join(f"{name} {_value(old)} -> {_value(new)}" for name, old, new in changes)


def _value(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value)


def changed_settings(old: RunConfig, new: RunConfig) -> tuple[tuple[str, Any, Any], ...]:
    """``(setting, old value, new value)`` for every setting ``new`` sets otherwise than ``old``."""
    before, after = to_dict(old), to_dict(new)

    def value(values: dict[str, Any], name: str) -> Any:
        section, _, key = name.rpartition(".")
        return values[section][key] if section else values[key]

    return tuple(
        (name, value(before, name), value(after, name))
        for name, _ in settings()
        if value(before, name) != value(after, name)
    )


def _as_written(run_dir: str | Path, stored: str | None) -> tuple[RunConfig | None, str]:
    """The settings rnnkit last wrote in config.json, from .config.json, when its hash is the
    one config.json records (or config.json records none, or no text); else None and why."""
    path = RunDir(run_dir).written_config
    try:
        written = from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except FileNotFoundError:
        return None, f"{WRITTEN_CONFIG}, the settings as written, is gone"
    except (OSError, ValueError, RecursionError, RnnkitError) as err:
        return None, f"{WRITTEN_CONFIG}, the settings as written, cannot be read: {err}"
    if stored and settings_sha256(written) != stored:  # "": config.json's sha256 is no text
        return None, f"its {SHA256} is not that of {WRITTEN_CONFIG}, the settings as written"
    return written, ""


def _stored_sha256(run_dir: str | Path) -> str | None:
    """The sha256 config.json records (None: none, as in runs from before it was recorded)."""
    data = _config_json(run_dir)
    if not isinstance(data, dict) or SHA256 not in data:
        return None
    stored = data[SHA256]
    return stored if isinstance(stored, str) else ""  # "" matches no hash: an edit


def config_edits(run_dir: str | Path, config: RunConfig | None = None) -> Edits | None:
    """How ``run_dir``'s config.json (read as ``config``, when given) was edited since rnnkit
    wrote it; None when it was not, or when neither its sha256 nor .config.json is there to
    tell (a run from before rnnkit recorded them)."""
    stored = _stored_sha256(run_dir)
    config = read_config(run_dir) if config is None else config
    if stored is not None and settings_sha256(config) == stored:
        return None
    written, unknown = _as_written(run_dir, stored)
    if written is None:
        return None if stored is None else Edits(RunDir(run_dir).config, (), unknown)
    changes = changed_settings(written, config)
    if not changes:  # only the sha256 was taken out or spoilt: nothing to refuse (resuming mends it)
        return None
    return Edits(RunDir(run_dir).config, changes, unknown)


def check_edits(run_dir: str | Path, config: RunConfig, accept: bool) -> Edits | None:
    """Refuse to resume a run whose config.json was edited, in one line naming the file and
    each change (as written -> now), unless ``accept``; a change the checkpoint cannot take
    (a model's shape, the data, the task, the optimizer, the batch size: see
    :data:`REGULARISERS`) is refused either way while there is a checkpoint to resume.
    Returns the edits accepted (None: none)."""
    edits = config_edits(run_dir, config)
    if edits is None:
        return None
    fixed = edits.fixed() if RunDir(run_dir).record("last").exists() else ()
    if fixed:
        raise RnnkitError(
            f"{edits.path}: edited since rnnkit wrote it: {describe_changes(fixed)} cannot change on "
            "--resume, with --accept-edits or without (the checkpoint in last/, its optimizer state "
            "and place in the epoch, and the vocabulary were made with the old values); put the old "
            "values back, or train a new run with --out"
        )
    if not accept:
        raise RnnkitError(
            f"{edits.path}: edited since rnnkit wrote it: {edits}; put the old values back, or "
            "add --accept-edits to train on with the new ones"
        )
    return edits


def settings_change(run_dir: str | Path, config: RunConfig) -> dict[str, Any] | None:
    """The record metrics.jsonl keeps when a run resumes with settings other than the ones
    its config.json was written with: ``{"settings_changed": {"train.lr": [1.0, 20.0]}}``
    (``null``: changed, but from what is not known); None when nothing changed (a run from
    before the sha256: when ``config`` is what its config.json says)."""
    stored = _stored_sha256(run_dir)
    if stored is not None and stored == settings_sha256(config):
        return None
    written, _ = _as_written(run_dir, stored)
    if written is None and stored is None:
        written = read_config(run_dir)
    if written is None:
        return {"settings_changed": None}
    changes = changed_settings(written, config)
    if not changes:
        return None
    return {"settings_changed": {name: [old, new] for name, old, new in changes}}


def sha256_matches(run_dir: str | Path, config: RunConfig) -> bool:
    """Whether config.json records the sha256 of ``config`` (runs from before it was recorded,
    and runs resumed with other settings, do not until it is written again)."""
    return _stored_sha256(run_dir) == settings_sha256(config)


def recorded_data(run: Path) -> dict[str, str | None]:
    """The corpus a run was trained on, as ``rnnkit train`` recorded it in data.json."""
    try:
        data = json.loads(RunDir(run).data.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
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
