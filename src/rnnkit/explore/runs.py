"""The runs ``rnnkit explore`` shows: each loaded once (again when a run still training saves
anew), what ``GET /api/runs`` says of it, its training log and a sample of its validation text."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import RunConfig
from rnnkit.errors import RnnkitError
from rnnkit.explore.sweep import Probe
from rnnkit.tasks import Task, task_kind
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.tasks.tagging import Tagging
from rnnkit.training.run import read_config
from rnnkit.training.rundir import RunDir

SAMPLE_TOKENS = 2000
"""Tokens of the run's validation text searched for where selected units fire."""

QUANTITIES = {
    "lstm": ["h", "c", "i", "f", "o"],
    "gru": ["h", "z", "r"],
    "lnlstm": ["h", "c", "i", "f", "o"],
    "mingru": ["h", "z"],
    "minlstm": ["h", "f", "i"],
    "slstm": ["h", "c", "i", "f", "o"],
}
"""The values inside a layer the page can show, by cell (others: h)."""


class Run:
    """One run the explorer shows: its settings now, its model once loaded (again when a run
    still training writes a newer checkpoint) and that model's float64 probe."""

    def __init__(self, id: int, path: str | os.PathLike[str], which: str, device: torch.device) -> None:
        self.id, self.path, self.device = id, Path(path), device
        self.config: RunConfig = read_config(self.path)  # a directory that is no run: one line
        self.kind: type[Task] = task_kind(self.config.task)  # what the views ask, never its name
        self.training = training(self.path)
        self.which = "last" if self.training else which
        self.trained: Any = None
        self.probed: tuple[Any, Probe] | None = None
        self.stamp: float | None = None
        self.notes: list[str] = []
        if self.training:
            self.notes.append(f"{self.path.name}: still training; showing its last checkpoint")

    def model(self) -> Any:
        """The trained run (:func:`rnnkit.inference.load`), reloaded when a training run saved anew."""
        from rnnkit.inference import load

        record = RunDir(self.path).record(self.which)
        try:
            stamp = record.stat().st_mtime
        except OSError:
            stamp = None
        if self.trained is None or (self.training and stamp != self.stamp):
            if stamp is None and self.training:
                raise RnnkitError(
                    f"{self.path.name}: still training and no checkpoint saved yet; try again later"
                )
            self.trained, self.stamp = load(self.path, which=self.which, device=self.device), stamp
        return self.trained

    def probe(self) -> Probe:
        """The float64 reference twin of the model now loaded (made once per model)."""
        trained = self.model()
        if self.probed is None or self.probed[0] is not trained:
            # a classifier's one loss is differentiated through the whole graph; per-step losses
            # by the sweep, which needs none
            self.probed = (trained, Probe(trained.model, graph=self.kind is Classification))
        return self.probed[1]

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/runs`` says of the run."""
        m, task = self.config.model, self.config.task
        return {
            "id": self.id,
            "name": self.path.name,
            "task": task,
            "cell": m.cell,
            "nonlinearity": "relu" if m.cell == "irnn" else m.nonlinearity,
            "layers": m.num_layers,
            "directions": 2 if m.bidirectional else 1,
            "hidden": m.hidden_size,
            "level": self.config.data.level if self.kind is LanguageModelling else None,
            "quantities": QUANTITIES.get(m.cell, ["h"]),
            "training": self.training,
            "which": self.which,
        }


def training(run: Path) -> bool:
    """Whether a training session holds the run's lock now (its recorded process is alive
    on this machine); a stale lock of a killed run does not count."""
    import socket

    try:
        record = json.loads(RunDir(run).lock.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def validation_sample(run: Run) -> list[str]:
    """Passages of the run's validation text (about :data:`SAMPLE_TOKENS` tokens), as texts; []
    when its corpus is not reachable from here."""
    trained, config = run.model(), run.config
    try:
        if run.kind is LanguageModelling:
            from rnnkit.cli.diagnose import validation_tokens

            tokens, _ = validation_tokens(run.path, config, trained.codec, SAMPLE_TOKENS)
            return [trained.codec.join(tokens)] if tokens else []
        from rnnkit.training.run import recorded_data

        data = recorded_data(run.path)["data"]
        if run.kind is Tagging:
            from rnnkit.tasks.tagging import locate_tagged, read_tagged

            fmt, _, valid, _ = locate_tagged(data)
            sentences = [s.words for s in read_tagged(valid, fmt, config.data.column)] if valid else []
        else:
            from rnnkit.data.sst import read_sst

            sentences = [w for w, _ in read_sst(Path(str(data)) / "dev.txt", config.data.classes)]
    except (RnnkitError, OSError, TypeError):
        return []
    out, total = [], 0
    for words in sentences:
        if total >= SAMPLE_TOKENS // 4:  # each sentence is traced alone
            break
        out.append(" ".join(words))
        total += len(words)
    return out


def training_log(run: Run) -> dict[str, Any]:
    """The run's metrics.jsonl as the page draws it: per epoch the training and validation
    figure (perplexity, accuracy or F1), per logged step the loss, the pre-clip gradient norm
    and the learning rate, the clipping threshold and the steps the guard skipped."""
    rows = []
    try:
        text = RunDir(run.path).metrics.read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written as we read
        if isinstance(row, dict):
            rows.append(row)
    epochs = [r for r in rows if "epoch" in r]
    if run.kind is LanguageModelling:
        metric = "ppl"
        train = [_exp(r.get("train_loss")) for r in epochs]
        valid = [r.get("valid_ppl", _exp(r.get("valid_loss"))) for r in epochs]
    else:
        metric = "f1" if any("valid_f1" in r for r in epochs) else "accuracy"
        train = [r.get(f"train_{metric}") for r in epochs]
        valid = [r.get(f"valid_{metric}") for r in epochs]
    logged = [r for r in rows if "train_loss" in r and "epoch" not in r and "check" not in r]
    clip = run.config.train.clip_norm
    return {
        "metric": metric,
        "epochs": [r["epoch"] for r in epochs],
        "epoch_steps": [r.get("step") for r in epochs],
        "train": train,
        "valid": valid,
        "train_loss": [r.get("train_loss") for r in epochs],
        "valid_loss": [r.get("valid_loss") for r in epochs],
        "steps": [r.get("step") for r in logged],
        "step_loss": [r.get("train_loss") for r in logged],
        "grad_norm": [r.get("grad_norm") for r in logged],
        "lr": [r.get("lr") for r in logged],
        "clip": clip if clip is not None and math.isfinite(clip) else None,
        "skipped": [r.get("step") for r in rows if "nonfinite" in r],
        "training": run.training,
    }


def _exp(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else None
