"""One training state: what a run carries from step to step, saved in ``last/``, loaded by ``--resume``.

:class:`TrainState` holds the optimizer, the schedule's history, the data cursor with the
carried hidden state, the random generators, the NT-ASGD average and the guard's rollback.
:meth:`TrainState.capture` is exactly the record and the tensors ``last/`` saves (as
tensors in safetensors and plain data in JSON: no pickle); :meth:`TrainState.restore` puts
them back, and training continues bit for bit as if it had never stopped (on the CPU, with
the same thread count). Distributed, what differs between ranks (the torch random state and
the carried hidden state) is gathered into rank 0's record and dealt back out on restore.

The saved names are a format: runs written by earlier versions must still resume, so keep
every key (``history``, ``cursor``, ``optim.<i>.<name>``, ``rng.torch`` ...) as it is.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells.base import LSTMState, SLSTMState
from rnnkit.errors import RnnkitError
from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.distributed import World, gather_rank_state, rank_state
from rnnkit.training.guard import Rollback
from rnnkit.training.rundir import RECORD

Record = dict[str, Any]
"""A checkpoint's JSON record."""
Tensors = dict[str, Tensor]
"""A checkpoint's named tensors."""


@dataclass
class History:
    """What the loop has seen so far: drives the schedule, early stopping and 'best'."""

    valid_loss: list[float] = field(default_factory=list)  # the task's selection figure: lower is better
    lr: float = 0.0
    step: int = 0
    since_best: int = 0  # epochs ended since the one that saved the best model
    best_epoch: int = 0
    checks: list[float] = field(default_factory=list)  # the figure at train.eval_every steps in an epoch
    lr_factor: float = 1.0  # train.on_nonfinite = "reduce": the cuts so far, kept over epochs

    @property
    def best(self) -> float:
        return min(self.valid_loss + self.checks, default=math.inf)


@dataclass
class Cursor:
    """Where training stands inside an epoch; saved with every resumable checkpoint."""

    epoch: int = 1
    position: int = 0  # the next window starts here: always a window boundary
    nll: float = 0.0
    count: int = 0
    bad: int = 0
    recent: list[float] = field(default_factory=list)  # the last good steps' losses (train.loss_spike)
    state: Any = None  # the hidden state carried into the next window (detached)


@dataclass
class Earlier:
    """The sessions of this run before this one (``--resume``): their training time and number."""

    seconds: float = 0.0
    sessions: int = 0


@dataclass
class TrainState:
    """Everything training changes besides the weights, in one object.

    Args:
        model: the task's model (its weights are saved beside this state, not in it).
        optimizer: the optimizer stepping ``model``'s parameters.
        generator: the generator of window lengths and batch orders (``train.seed``).
        average: NT-ASGD's running mean of the weights (inactive until it starts).
        rollback: the update the guard can undo (``train.on_nonfinite = "reduce"``), or None.
        history: the schedule's and model selection's history.
        cursor: the position inside the epoch, with the carried hidden state.
        world: this process's place among the training processes.
        device: where the model lives (restored tensors go there).
        earlier: the run's sessions before this one.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    average: ParameterAverage
    rollback: Rollback | None = None
    history: History = field(default_factory=History)
    cursor: Cursor = field(default_factory=Cursor)
    world: World = field(default_factory=World)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    earlier: Earlier = field(default_factory=Earlier)

    @classmethod
    def create(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        seed: int,
        rollback: bool = False,
        world: World | None = None,
        device: torch.device | None = None,
    ) -> TrainState:
        """A run's state before its first step: the window generator seeded with ``seed``,
        averaging off, a rollback buffer if ``rollback`` (it costs a copy of the weights)."""
        return cls(
            model,
            optimizer,
            torch.Generator().manual_seed(seed),
            ParameterAverage(model.parameters()),
            Rollback(model, optimizer) if rollback else None,
            world=world or World(),
            device=device or torch.device("cpu"),
        )

    def capture(
        self, seconds: float = 0.0, metrics_bytes: int | None = None, extra: Record | None = None
    ) -> tuple[Record, Tensors]:
        """The record and tensors of ``last/`` right now: ``extra`` (the epoch's figures) beside
        the step, the resume state, the world size, ``metrics_bytes`` (the log's size, which a
        resume cuts it back to) and the training time over every session (``seconds``: this
        one's). Distributed, a collective: every rank calls it; rank 0's result holds all."""
        state, tensors = _capture(self.optimizer, self.history, self.cursor, self.generator)
        state["average"], average = self.average.state()
        if self.rollback is not None:
            state["rollback"], rollback = self.rollback.state_tensors()
            tensors.update(rollback)
        tensors.update(average)
        tensors = gather_rank_state(self.world, tensors, self.device)
        record = {
            "step": self.history.step,
            **(extra or {}),
            "resume": state,
            "world_size": self.world.size,
            # the log as it stood: a resume cuts it back to exactly this (lines of the
            # checkpoint's own step may come before or after it, e.g. an epoch's end)
            "metrics_bytes": metrics_bytes,
            "rnnkit": rnnkit.__version__,
            # training time up to here over every session: a resumed run's summary adds them up
            "seconds": self.earlier.seconds + seconds,
            "sessions": self.earlier.sessions + 1,
        }
        return record, tensors

    def restore(self, record: Record, tensors: Tensors, source: str | os.PathLike[str] | None = None) -> None:
        """Put back what :meth:`capture` saved (this rank's part of it).

        Args:
            record: the checkpoint's record (``checkpoint.json``).
            tensors: the tensors of its state file.
            source: the checkpoint directory they were read from, so that an error names the
                file at fault (without it, the bare file names).

        Raises:
            RnnkitError: the checkpoint was written by another number of processes, or its
                training state is incomplete or does not fit this run (naming the file, the
                part of the state and the key).
        """
        tensors = _Tensors(rank_state(self.world, record, tensors))
        part = "resume"
        try:
            state = record["resume"]
            _restore(state, tensors, self.optimizer, self.history, self.cursor, self.generator, self.device)
            self.earlier = Earlier(record.get("seconds", 0.0), record.get("sessions", 1))
            part = "average"
            self.average.load(state.get("average", {"active": False}), tensors)
            if self.rollback is not None:
                part = "rollback"
                self.rollback.load(state.get("rollback", False), tensors)
        except _UnfitError as err:
            raise _unfit(record, source, err.part, err.error) from None
        except RESTORE_ERRORS as err:
            raise _unfit(record, source, part, err) from None


RESTORE_ERRORS = (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError)
"""What putting back a state that does not fit raises (from here, the optimizer or torch)."""


class _NoTensorError(KeyError):
    """A tensor the record calls for is not in the state file."""


class _Tensors(dict[str, Tensor]):
    """A state file's tensors: a missing one raises :class:`_NoTensorError`, so the error can name
    the state file rather than the record."""

    def __missing__(self, key: str) -> Tensor:
        raise _NoTensorError(key)


class _UnfitError(Exception):
    """A part of the state (``part``) could not be put back: ``error`` says why."""

    def __init__(self, part: str, error: Exception) -> None:
        super().__init__(part, error)
        self.part, self.error = part, error


def _unfit(record: Record, source: str | os.PathLike[str] | None, part: str, err: Exception) -> RnnkitError:
    """The one-line error for a training state that does not fit: the file at fault (the state
    file for a missing or wrong tensor, else the record), the part and the key or reason."""
    in_record = isinstance(err, KeyError) and not isinstance(err, _NoTensorError)
    name = RECORD if in_record else str(record.get("state", "the state file"))
    where = name if source is None else os.path.join(source, name)
    if isinstance(err, KeyError) and err.args:
        why = f"no {err.args[0]!r}"
    else:
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return RnnkitError(
        f"{where}: the training state is incomplete or does not fit this run ({part}: {why}); "
        "is it this run's checkpoint?"
    )


def _capture(
    optimizer: torch.optim.Optimizer, history: History, cursor: Cursor, generator: torch.Generator
) -> tuple[Record, Tensors]:
    """(JSON record, tensors) of the optimizer, history, cursor, hidden state and generators."""
    tensors: Tensors = {"rng.torch": torch.get_rng_state(), "rng.windows": generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    hidden = cursor.state
    if isinstance(hidden, Tensor):
        tensors["hidden.h"] = hidden
    elif hidden is not None:
        for name, t in zip(hidden._fields, hidden):
            tensors[f"hidden.{name}"] = t
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: (name, keys, position, has_gauss, cached)
    record = {
        "history": asdict(history),
        "cursor": {k: v for k, v in asdict(cursor).items() if k != "state"},
        "hidden": _hidden_kind(hidden),
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "rng": {
            "python": [py_version, list(py_state), py_gauss],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        },
        "threads": torch.get_num_threads(),
    }
    return record, tensors


def _restore(
    record: Record,
    tensors: Tensors,
    optimizer: torch.optim.Optimizer,
    history: History,
    cursor: Cursor,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Put back what :func:`_capture` saved; raises :class:`_UnfitError` naming the part that does not fit."""
    part = "optimizer"
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(device)
        for index, entries in record["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(entries)
        optimizer.load_state_dict({"state": state, "param_groups": record["optimizer"]["param_groups"]})
        part = "history"
        for key, value in record["history"].items():
            setattr(history, key, value)
        part = "cursor"
        for key, value in record["cursor"].items():
            setattr(cursor, key, value)
        part = "hidden state"
        cursor.state = _hidden(record["hidden"], tensors, device)
        part = "threads"
        torch.set_num_threads(int(record["threads"]))
        part = "random state"
        _restore_rng(record["rng"], tensors)
        generator.set_state(tensors["rng.windows"])
    except RESTORE_ERRORS as err:
        raise _UnfitError(part, err) from None


_HIDDEN_KINDS: dict[str, type[LSTMState] | type[SLSTMState]] = {"lstm": LSTMState, "slstm": SLSTMState}
"""The named-tuple states a checkpoint can carry, by the kind its record names."""


def _hidden_kind(hidden: Any) -> str | None:
    """How the record names the carried state: "h" (one tensor), "lstm", "slstm", or None."""
    if hidden is None:
        return None
    if isinstance(hidden, Tensor):
        return "h"
    return next(kind for kind, cls in _HIDDEN_KINDS.items() if isinstance(hidden, cls))


def _hidden(kind: str | None, tensors: Tensors, device: torch.device) -> Any:
    """The carried hidden state saved as ``kind`` ("lstm": h and c; "slstm": h, c, n and m;
    "h"; None: none)."""
    if kind in _HIDDEN_KINDS:
        cls = _HIDDEN_KINDS[kind]
        return cls(*(tensors[f"hidden.{name}"].to(device) for name in cls._fields))
    return tensors["hidden.h"].to(device) if kind == "h" else None


def _restore_rng(rng: Record, tensors: Tensors) -> None:
    """Python's, NumPy's, torch's and CUDA's random states as they were saved."""
    py = rng["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = rng["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
