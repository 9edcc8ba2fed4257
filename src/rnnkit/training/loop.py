"""The training loop: :func:`fit` trains a task into a run directory, epoch by epoch, through one
:class:`~rnnkit.training.state.TrainState`; the task supplies the loss and the figures."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import rnnkit
from rnnkit.analysis.plots import learning_curve
from rnnkit.cells.base import detach_state
from rnnkit.config import RunConfig
from rnnkit.errors import RnnkitError, Terminated
from rnnkit.fileio import WriteError, cannot_write, reason, write_text_atomic
from rnnkit.models.config import check_task_options
from rnnkit.tasks.base import Step, Task
from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.checkpoint import load_checkpoint, load_state, read_record, save_checkpoint
from rnnkit.training.clipping import clip_gradients
from rnnkit.training.distributed import World, setup, teardown
from rnnkit.training.guard import RECENT, StepFn, diagnose, guard, spike
from rnnkit.training.lock import RunLock
from rnnkit.training.progress import Progress, duration, rate_unit
from rnnkit.training.run import settings_change, sha256_matches, write_config
from rnnkit.training.rundir import RunDir
from rnnkit.training.schedules import cosine_factor, nonmonotone_trigger, plateau_lr, zaremba_lr
from rnnkit.training.state import Cursor, Earlier, History, TrainState

SINGLE = World()  # one process, not distributed
Log = Callable[[dict[str, Any]], None]
"""Where the loop writes its metrics: one JSON-able entry per call."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError) as err:  # CPU-only torch asserts on "cuda"
        raise RnnkitError(f"device {name!r} is not usable here ({str(err).splitlines()[0]})") from None
    if device.type not in ("cpu", "cuda"):  # meta, mps, xla ...: rnnkit's kernels are for these two
        raise RnnkitError(f"device {name!r} is not usable here (rnnkit runs on cpu and cuda)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    t = config.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "ntasgd":  # SGD until the trigger, then SGD with averaged iterates
        if t.nonmono < 1:
            raise RnnkitError(f"train.nonmono must be at least 1, got {t.nonmono}")
        return torch.optim.SGD(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def epoch_lr(config: RunConfig, epoch: int, history: History) -> float:
    t = config.train
    if t.schedule == "zaremba":
        return zaremba_lr(t.lr, epoch, t.decay_start, t.decay)
    if t.schedule == "plateau":
        return plateau_lr(history.lr or t.lr, history.valid_loss, t.plateau_factor) if epoch > 1 else t.lr
    return t.lr


class MetricsLog:
    """``metrics.jsonl``: one JSON object a line, each line written whole or not at all, at
    once (None: write nothing, as on ranks other than 0).

    A line that cannot be written (a full disk, a read-only file system) is cut off again, so
    the log ends with its last complete line; the log is then closed and a
    :class:`~rnnkit.fileio.WriteError` says so, once: closing it afterwards raises nothing.

    Every line says when it was written: ``time`` (UTC, ISO 8601) and, given ``elapsed``,
    ``elapsed_s``: the run's training seconds so far, over every session of a resumed run.
    """

    def __init__(self, path: Path | None, elapsed: Callable[[], float] | None = None) -> None:
        self.path, self.size, self.elapsed = path, 0, elapsed
        self.file: IO[bytes] | None = None
        self.error: WriteError | None = None
        if path is not None:
            try:
                self.file = path.open("ab", buffering=0)  # unbuffered: a line is on disk or refused
                self.size = self.file.seek(0, os.SEEK_END)
            except OSError as err:
                raise cannot_write(path, err, "no line was logged") from None

    def __call__(self, entry: dict[str, Any]) -> None:
        if self.error is not None:
            raise self.error
        if self.file is None or self.path is None:
            return
        entry = {**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.elapsed is not None:
            entry["elapsed_s"] = round(self.elapsed(), 3)
        line = (json.dumps(entry) + "\n").encode("utf-8")
        try:
            done = 0
            while done < len(line):  # a write may take only part of it (the disk filling up)
                taken = self.file.write(line[done:])
                if not taken:  # nothing taken and no error: never spin on it
                    raise OSError(errno.EIO, "the file took none of the line")
                done += taken
        except OSError as err:
            why = reason(err)
            kept = self._cut_back()
            self.error = WriteError(f"{self.path}: cannot write a line ({why}); {kept}", self.path, why)
            raise self.error from None
        self.size += len(line)

    def _cut_back(self) -> str:
        """Cut the log back to its last complete line and close it; says what the log holds."""
        assert self.file is not None
        try:
            os.ftruncate(self.file.fileno(), self.size)
            kept = "the lines before it are kept whole"
        except OSError:
            kept = f"its last line may be torn (the lines before byte {self.size} are whole)"
        with contextlib.suppress(OSError):
            self.file.close()
        self.file = None
        return kept

    def tell(self) -> int | None:
        """The log's size in bytes (None when nothing is written here)."""
        return None if self.path is None else self.size

    def close(self) -> None:
        """Close the log (nothing to flush: every line went out whole when it was logged)."""
        file, self.file = self.file, None
        if file is not None and self.path is not None:
            try:
                file.close()
            except OSError as err:
                raise cannot_write(self.path, err, "its lines may not all be on disk") from None


class Termination:
    """SIGTERM during training: while steps run, a request looked at after each step (every
    ``train.log_every`` steps, all ranks agreeing, when distributed), where ``last/`` is saved
    at the step reached and :class:`~rnnkit.errors.Terminated` raised; at any other time, or a
    second SIGTERM, :class:`~rnnkit.errors.Terminated` at once (as Ctrl-C). A scheduler's
    SIGTERM before its SIGKILL then costs one step, not the minutes since the last save."""

    def __init__(self) -> None:
        self.requested = False
        self.in_steps = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.in_steps and not self.requested:
            self.requested = True
            return
        raise Terminated()

    @contextlib.contextmanager
    def installed(self) -> Any:
        """The handler installed for SIGTERM (in the main thread; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self.handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class Session:
    """What one training session works with besides the :class:`TrainState`: never saved
    (a resumed run opens its own).

    Args:
        config: the run's configuration.
        meter: the progress shown (and the session's clock).
        step: the task's step, or the same through DistributedDataParallel.
        log: where metrics go (:class:`MetricsLog` in :func:`fit`).
        world: this process's place among the training processes.
        run_dir: the run directory; None: no checks or checkpoints (one epoch on its own).
    """

    config: RunConfig
    meter: Progress
    step: StepFn
    log: Log
    world: World = SINGLE
    run_dir: Path | None = None
    saved_at: float = field(default_factory=time.perf_counter)
    """When ``last/`` was last saved in this session (its start before any save)."""
    termination: Termination = field(default_factory=Termination)
    """A SIGTERM asked for while steps run (:func:`fit` installs its handler)."""
    lr_now: float = 0.0
    """The rate of the latest step (the epoch's rate times the cosine schedule's share)."""

    def say(self, line: str) -> None:
        """A line for the user (rank 0 only), above the progress bar."""
        if self.world.main:
            self.meter.write(line)


def train_epoch(
    task: Task,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    history: History,
    cursor: Cursor,
    log: Log,
    generator: torch.Generator,
    progress: bool = True,
) -> dict[str, float]:
    """One epoch on its own (benchmarks, tests): :func:`run_epoch` on a state made of these
    pieces, one process, no averaging, rollback, checks or checkpoints."""
    state = TrainState(task.model, optimizer, generator, ParameterAverage([]), history=history, cursor=cursor)
    meter = Progress(config.train.epochs, rate_unit(config.task, config.data.level), progress)
    return run_epoch(task, state, Session(config, meter, task.step, log))


@dataclass
class _Pace:
    """An epoch's speed so far: units counted since ``start`` (from ``counted``), last ``rate``."""

    start: float
    counted: int
    rate: float = 0.0


def run_epoch(task: Task, state: TrainState, session: Session) -> dict[str, float]:
    """One pass over the task's training batches, from ``state.cursor`` on.

    The cursor is advanced after every batch, and then, in a run directory, the model may be
    validated (``train.eval_every``) and ``last/`` saved (``train.checkpoint_every``).
    Distributed, each rank's loss is weighted by its share of the step's units. Returns the
    epoch's running figures (summed over ranks); ``session.meter`` shows the progress.
    """
    cursor = state.cursor
    task.model.train()
    pace = _Pace(time.perf_counter(), cursor.count)
    batches, total, done = task.batches(cursor.epoch, cursor.position, state.generator)
    session.meter.begin(cursor.epoch, total, done)
    session.termination.in_steps = session.run_dir is not None  # where a request is looked at
    try:
        for index, (position, batch) in enumerate(batches, start=done):
            factor = _step_factor(session.config.train, cursor.epoch, index, total)
            norm = _update(task, state, session, batch, position, factor)
            _show(task, state, session, pace, norm)
            if session.run_dir is not None:
                _between_windows(task, state, session)
    finally:
        session.termination.in_steps = False
        session.meter.end()  # the bar goes, whatever stopped the epoch
    nll, count, new = session.world.sum(
        [cursor.nll, cursor.count, cursor.count - pace.counted], task_device(task)
    )
    figures = task.running(nll, count)
    figures["tokens_per_s"] = new / (time.perf_counter() - pace.start)
    return figures


def _step_factor(t: Any, epoch: int, index: int, total: int) -> float:
    """The cosine schedule's share of the epoch's rate for window ``index`` (0-based) of
    ``total`` in ``epoch``, counted over all ``train.epochs`` as if each had ``total``
    windows (with ``variable_bptt`` the count differs a little from epoch to epoch); 1 for the
    epoch-wise schedules."""
    if t.schedule != "cosine":
        return 1.0
    return cosine_factor((epoch - 1) * total + index, t.epochs * total, t.warmup_steps)


def _update(
    task: Task, state: TrainState, session: Session, batch: Any, position: int, factor: float = 1.0
) -> float:
    """One step on ``batch`` (the window ending at ``position``) at ``factor`` times the
    epoch's rate, taken if the guard lets it; returns the gradient norm before clipping."""
    t, cursor, optimizer, world = session.config.train, state.cursor, state.optimizer, session.world
    # Truncated BPTT: the state flows on from the last window, its gradient stops here.
    hidden = None if cursor.state is None else detach_state(cursor.state)
    with autocast(t.precision, task_device(task)):
        result = session.step(batch, hidden)
    objective = result.loss
    if world.distributed and not getattr(task, "equal_shares", False):
        # DDP averages over ranks: weight each by its share of the step's units
        (units,) = world.sum([result.count], objective.device)
        objective = objective * (result.count * world.size / units)
    for group in optimizer.param_groups:  # AWD-LSTM: shorter windows take smaller steps
        group["lr"] = state.history.lr * result.lr_scale * factor
    session.lr_now = state.history.lr * factor
    optimizer.zero_grad(set_to_none=True)
    objective.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    norm = clip_gradients(task.model.parameters(), t.clip_norm, t.clip_value)
    state.history.step += 1
    cursor.position = position
    loss = result.loss.item()
    if math.isfinite(loss) and math.isfinite(norm) and not spike(loss, cursor.recent, t.loss_spike):
        _advance(state, result, loss)
    else:
        cursor.bad = cursor.bad + 1
        where = diagnose(task.model, session.step, batch, hidden, loss, norm, t.loss_spike)
        guard(state, t, loss, norm, where, session.log)
        cursor.state = None  # a non-finite state would poison the windows after it
    return norm


def _advance(state: TrainState, result: Step, loss: float) -> None:
    """A good step: the update (the weights before it kept for the guard), the average, the
    carried state and the running sums."""
    cursor = state.cursor
    if state.rollback is not None:
        state.rollback.save()
    state.optimizer.step()
    cursor.recent = [*cursor.recent[-(RECENT - 1) :], loss]
    state.average.update()
    cursor.bad, cursor.state = 0, None if result.state is None else detach_state(result.state)
    cursor.nll += result.nll
    cursor.count += result.count


def _show(task: Task, state: TrainState, session: Session, pace: _Pace, norm: float) -> None:
    """The step on the progress meter and, every ``train.log_every`` steps, in the log."""
    cursor, meter, lr = state.cursor, session.meter, session.lr_now
    logged = state.history.step % session.config.train.log_every == 0
    # shown from the first step on; distributed, the sum is a collective: only where
    # every rank measures (log_every, its session's first step)
    figures = None
    if logged or (meter.enabled and not session.world.distributed) or meter.steps == 0:
        counts = [cursor.nll, cursor.count, cursor.count - pace.counted]
        nll, count, new = session.world.sum(counts, task_device(task))
        figures = task.running(nll, count)
        pace.rate = new / (time.perf_counter() - pace.start)
    meter.step(figures, lr, norm, pace.rate)
    if figures is not None and logged:
        entry = {"step": state.history.step, "train_loss": figures["loss"], "lr": lr, "grad_norm": norm}
        session.log({**entry, "tokens_per_s": pace.rate})


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``train.precision``: "bf16" runs forward passes under bfloat16 autocast (matrix
    products in bf16, softmax and losses in fp32; weights, gradients and the optimizer stay
    fp32, so no loss scaling is needed); "fp32" changes nothing. On a CPU whose torch cannot
    run a recurrent layer in bf16 (oneDNN has no bf16 LSTM primitive without AVX-512 bf16),
    bf16 is refused in one line before anything runs."""
    if precision == "bf16" and device.type == "cpu" and (problem := cpu_bf16_problem()):
        raise RnnkitError(f"train.precision = bf16 does not run on this CPU ({problem}); use fp32")
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def cpu_bf16_problem() -> str | None:
    """Why a recurrent layer cannot run under bf16 autocast on this CPU (torch's first line of
    it), or None when it can: tried once on a tiny LSTM and GRU."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for layer in (torch.nn.LSTM(4, 4), torch.nn.GRU(4, 4)):
                layer(torch.zeros(2, 1, 4))
    except RuntimeError as err:
        return str(err).splitlines()[0][:120]
    return None


def task_device(task: Task) -> torch.device:
    return next(task.model.parameters()).device


def make_task(config: RunConfig, corpus: Any, device: torch.device, world: World = SINGLE) -> Task:
    """The task ``config.task`` names, on ``corpus``, its model on ``device``; training on
    ``world``'s share of the data."""
    from rnnkit.tasks import task_kind  # the registry: the one place a task name is looked up

    check_task_options(config.model, config.task, config.data)
    return task_kind(config.task)(config, corpus, device, (world.rank, world.size))


def fit(
    config: RunConfig, corpus: Any, run_dir: str | Path, progress: bool = True, resume: bool = False
) -> dict[str, Any]:
    """Train the task ``config.task`` on ``corpus``, keeping best and last checkpoints in ``run_dir``.

    ``last`` always holds the full training state, saved at every epoch's end and every
    ``train.checkpoint_every`` steps; ``resume=True`` continues from it exactly. The run
    directory is locked while training (:class:`rnnkit.training.lock.RunLock`).
    """
    t = config.train
    run_dir = Path(run_dir)
    check_settings(config, corpus)
    if t.threads:
        torch.set_num_threads(t.threads)
    world, device_name = setup(t.device, t.backend, t.dist_timeout)
    try:
        with RunLock(run_dir) if world.main else contextlib.nullcontext():  # one trainer per run
            summary = _fit(config, corpus, run_dir, progress, resume, world, pick_device(device_name))
        world.barrier()  # the other ranks wait while rank 0 evaluates the best model and writes
        return summary
    finally:
        teardown(world)


def check_settings(config: RunConfig, corpus: Any) -> None:
    """Refuse, in one line, what training cannot start with."""
    t = config.train
    if corpus.valid is None:
        raise RnnkitError("the corpus has no validation split: give --valid FILE or a directory with one")
    if not t.clip_norm > 0:
        raise RnnkitError(f"train.clip_norm must be above 0 (inf: measure, never clip), got {t.clip_norm}")
    if not 0 < t.nonfinite_factor < 1:
        raise RnnkitError(f"train.nonfinite_factor must be in (0, 1), got {t.nonfinite_factor}")
    if t.loss_spike != 0 and not t.loss_spike > 1:
        raise RnnkitError(f"train.loss_spike must be 0 (off) or above 1, got {t.loss_spike}")


def _fit(
    config: RunConfig,
    corpus: Any,
    run_dir: Path,
    progress: bool,
    resume: bool,
    world: World,
    device: torch.device,
) -> dict[str, Any]:
    """:func:`fit` inside the lock: build, start or resume, train every epoch, summarize."""
    t = config.train
    seed_everything(t.seed)
    torch.manual_seed(t.seed + world.rank)  # dropout draws its own masks on each rank
    task = make_task(config, corpus, device, world)
    optimizer = make_optimizer(task.model, config)
    state = TrainState.create(task.model, optimizer, t.seed, t.on_nonfinite == "reduce", world, device)
    if _resumable(run_dir, world, resume):
        _resume(state, run_dir, config)
    elif world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
        task.save(run_dir)
    session = _open_session(config, task, state, run_dir, progress and world.main)
    try:
        with session.termination.installed():
            while state.cursor.epoch <= t.epochs:
                _train_one_epoch(task, state, session)
    except WriteError as err:  # a full disk, a read-only one: say where training stands
        raise _stopped(err, state.history.step, run_dir) from None
    finally:
        if isinstance(session.log, MetricsLog):
            session.log.close()
    if not world.main:  # rank 0 evaluates the best model and writes the summary
        return {}
    return _summarize(task, state, session, run_dir)


def _stopped(err: WriteError, step: int, run_dir: Path) -> WriteError:
    """``err`` (a file training could not write), with where training stopped and what
    ``--resume`` continues from."""
    again = f"rnnkit train --resume {run_dir}"
    try:
        held = f"last/ holds step {read_record(RunDir(run_dir).last)['step']} ({again} continues from it)"
    except (RnnkitError, KeyError, TypeError):
        held = f"last/ holds no checkpoint yet ({again} starts it again)"
    return err.adding(f"training stopped after step {step}; {held}")


def _resumable(run_dir: Path, world: World, resume: bool) -> bool:
    """Whether to resume: asked, and ``last/`` is there. A run killed before its first
    checkpoint starts from the beginning; its log is kept aside (``metrics.jsonl.1``, the
    next free number after it), never written over."""
    if resume and not RunDir(run_dir).record("last").exists():
        if world.main:
            aside = _set_aside(RunDir(run_dir).metrics)
            kept = f" (the killed run's log is kept as {aside.name})" if aside is not None else ""
            print(f"rnnkit: {run_dir}: no checkpoint yet; training from the beginning{kept}", file=sys.stderr)
        return False
    return resume


def _set_aside(path: Path) -> Path | None:
    """Rename a non-empty ``path`` to ``path.N``, the first N free; where it went (None:
    nothing to keep)."""
    try:
        if path.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.{n}")
    try:
        os.replace(path, aside)
    except OSError as err:
        raise cannot_write(aside, err, f"{path.name} is as it was; nothing was trained") from None
    return aside


def _resume(state: TrainState, run_dir: Path, config: RunConfig) -> None:
    """Load ``last/`` into the model and ``state``; cut the log back to the checkpoint; when
    ``config`` is not what config.json was written with (an edit taken with --accept-edits,
    or other settings given to :func:`fit`), log the change and write config.json anew; and
    say so when the run has no epoch left to train."""
    record, tensors = load_state(RunDir(run_dir).last)
    load_checkpoint(RunDir(run_dir).last, state.model)
    state.restore(record, tensors, RunDir(run_dir).last)
    if not state.world.main:
        return
    _truncate_metrics(RunDir(run_dir).metrics, state.history.step, record.get("metrics_bytes"))
    change = settings_change(run_dir, config)
    if change is not None:
        log = MetricsLog(RunDir(run_dir).metrics, functools.partial(_trained_for, state, None))
        try:
            log({"step": state.history.step, **change})
        finally:
            log.close()
    if not sha256_matches(run_dir, config):  # changed; or a run from before the sha256 gets one
        write_config(run_dir, config)
    t = config.train
    if state.cursor.epoch > t.epochs:
        stopped = t.patience is not None and state.history.since_best > t.patience
        done = "it stopped early (train.patience)" if stopped else f"train.epochs = {t.epochs} are trained"
        print(
            f"rnnkit: {run_dir}: {done}, nothing left to train (raise train.epochs in config.json, "
            "with --resume --accept-edits, to train on)",
            file=sys.stderr,
        )


def _trained_for(state: TrainState, meter: Progress | None) -> float:
    """The run's training seconds so far: its earlier sessions', and this one's on ``meter``."""
    return state.earlier.seconds + (meter.seconds() if meter is not None else 0.0)


def _open_session(config: RunConfig, task: Task, state: TrainState, run_dir: Path, progress: bool) -> Session:
    """This session's meter, metrics log and step (through DDP when distributed: gradients
    averaged in the backward pass, rank 0's weights broadcast to every rank)."""
    world, device, step = state.world, state.device, task.step
    if config.train.schedule == "cosine" and world.distributed:
        # the cosine's step count is this process's windows; sharded batches count otherwise
        raise RnnkitError("train.schedule = cosine runs in one process only (with --nproc: zaremba, plateau)")
    if world.distributed:
        step = DistributedDataParallel(
            _StepModule(task), device_ids=[device] if device.type == "cuda" else None
        )
    meter = Progress(config.train.epochs, rate_unit(config.task, config.data.level), progress)
    elapsed = functools.partial(_trained_for, state, meter)
    log = MetricsLog(RunDir(run_dir).metrics if world.main else None, elapsed)
    session = Session(config, meter, step, log, world, run_dir)
    if config.train.average_from > config.train.epochs:  # a preset's epochs cut short, say
        session.say(
            f"warning: train.average_from = {config.train.average_from} is after the last epoch "
            f"(train.epochs = {config.train.epochs}): no weights are averaged"
        )
    return session


def _train_one_epoch(task: Task, state: TrainState, session: Session) -> None:
    """The epoch at the cursor (from its start or where it stopped), then its end: validation,
    the log and the line, NT-ASGD's trigger, early stopping, and ``last/`` saved."""
    t, history, epoch = session.config.train, state.history, state.cursor.epoch
    if state.cursor.position == 0 and state.cursor.count == 0:
        history.lr = epoch_lr(session.config, epoch, history)
        if t.schedule != "plateau" or epoch == 1:  # plateau carries on from history.lr
            history.lr *= history.lr_factor
        if 0 < t.average_from <= epoch and not state.average.active:
            state.average.start()
            session.say(f"epoch {epoch}/{t.epochs} | averaging the weights from now on (train.average_from)")
    train = run_epoch(task, state, session)
    valid, _ = validate(task, state, session, {"step": history.step, "epoch": epoch})
    history.valid_loss.append(task.selection(valid))
    history.since_best = epoch - history.best_epoch
    _report_epoch(task, state, session, train, valid)
    if (
        t.optimizer == "ntasgd"
        and not state.average.active
        and nonmonotone_trigger(history.valid_loss, t.nonmono)
    ):
        state.average.start()
        session.say(
            f"epoch {epoch}/{t.epochs} | NT-ASGD: validation stopped improving; averaging from now on"
        )
    stop = t.patience is not None and history.since_best > t.patience
    state.cursor = Cursor(epoch=t.epochs + 1 if stop else epoch + 1)  # the next epoch starts afresh
    save_last(state, session, {"epoch": epoch, "valid": valid})
    if stop:
        session.say(f"early stop: no better validation loss for {history.since_best} epochs")


def _report_epoch(
    task: Task, state: TrainState, session: Session, train: dict[str, float], valid: dict[str, float]
) -> None:
    """An epoch's end in the log, in a line for the user and in the learning curve."""
    t, history, meter, epoch = session.config.train, state.history, session.meter, state.cursor.epoch
    # the cosine schedule's rate moves every step: its last step's, in the log and in the line
    lr = session.lr_now if t.schedule == "cosine" and session.lr_now else history.lr
    session.log(
        {
            "epoch": epoch,
            "step": history.step,
            "lr": lr,
            **{f"train_{k}": v for k, v in train.items() if k != "tokens_per_s"},
            **{f"valid_{k}": v for k, v in valid.items()},
            "tokens_per_s": train["tokens_per_s"],
            "averaging": state.average.active,
        }
    )
    eta = "" if epoch == t.epochs else f" | ETA {duration(meter.eta())}"
    session.say(
        f"epoch {epoch}/{t.epochs} | lr {lr:.4g} | train "
        + " ".join(f"{k} {v:.4g}" for k, v in train.items() if k != "tokens_per_s")
        + f" | {task.describe('valid', valid)} | {train['tokens_per_s']:.0f} {meter.unit}{eta}"
    )
    if session.world.main and session.run_dir is not None:
        files = RunDir(session.run_dir)
        learning_curve(files.metrics, files.learning_curve)


def validate(
    task: Task, state: TrainState, session: Session, record: dict[str, Any]
) -> tuple[dict[str, float], bool]:
    """Validation figures; a new best (no worse than any before) is saved as ``best``, with
    ``record`` (its step and epoch). NT-ASGD: the averaged weights are the model."""
    history = state.history
    with state.average.swapped(), autocast(session.config.train.precision, state.device):
        valid = task.evaluate("valid")
        improved = task.selection(valid) <= history.best
        if improved:
            if session.world.main and session.run_dir is not None:
                best = {**record, "valid": valid}
                save_checkpoint(RunDir(session.run_dir).best, state.model, best, history.step)
            history.best_epoch = record["epoch"]
    return valid, improved


def save_last(state: TrainState, session: Session, extra: dict[str, Any] | None = None) -> None:
    """Save the whole training state in ``last/`` (:meth:`TrainState.capture`, with ``extra``
    in the record). Distributed, every rank joins; rank 0 writes."""
    metrics_bytes = session.log.tell() if isinstance(session.log, MetricsLog) else None
    record, tensors = state.capture(session.meter.seconds(), metrics_bytes, extra)
    if state.world.main and session.run_dir is not None:
        save_checkpoint(RunDir(session.run_dir).last, state.model, record, state.history.step, extra=tensors)
    session.saved_at = time.perf_counter()


def _between_windows(task: Task, state: TrainState, session: Session) -> None:
    """Within an epoch: validate every ``train.eval_every`` steps (model selection only:
    schedules look at epochs) and save ``last/`` every ``train.checkpoint_every`` steps and
    after ``train.checkpoint_minutes`` of training since the last save (looked at every
    ``train.log_every`` steps, every rank agreeing), so a long epoch killed midway loses
    minutes, not the epoch. Saving never changes what is computed."""
    t, history, cursor = session.config.train, state.history, state.cursor
    look = history.step % t.log_every == 0  # where every rank looks at its clock and signals
    due = (
        look
        and bool(t.checkpoint_minutes)
        and time.perf_counter() - session.saved_at >= 60 * t.checkpoint_minutes
    )
    stop = session.termination.requested
    if session.world.distributed:  # all ranks look together, or none does
        flags = session.world.sum([float(due), float(stop)], task_device(task)) if look else [0.0, 0.0]
        due, stop = flags[0] > 0, flags[1] > 0
    if stop:
        save_last(state, session)
        raise Terminated()
    if t.eval_every and history.step % t.eval_every == 0:
        valid, improved = validate(task, state, session, {"step": history.step, "epoch": cursor.epoch})
        history.checks.append(task.selection(valid))
        session.log(
            {"check": cursor.epoch, "step": history.step, **{f"valid_{k}": v for k, v in valid.items()}}
        )
        session.say(
            f"step {history.step:5d} | {task.describe('valid', valid)}" + (" | best" if improved else "")
        )
        task.model.train()
    if (t.checkpoint_every and history.step % t.checkpoint_every == 0) or due:  # any rank's clock: all save
        save_last(state, session)


def _summarize(task: Task, state: TrainState, session: Session, run_dir: Path) -> dict[str, Any]:
    """The best model's figures on validation (and test) with the run's facts, in
    ``summary.json`` (rank 0)."""
    best = load_checkpoint(RunDir(run_dir).best, state.model)
    with autocast(session.config.train.precision, state.device):
        summary: dict[str, Any] = {"best_valid": task.evaluate("valid")}
        if task.has_split("test"):
            summary["test"] = task.evaluate("test")
    summary["run"] = run_facts(run_dir, best, state.earlier, session.meter.seconds(), state.device)
    write_text_atomic(RunDir(run_dir).summary, json.dumps(summary, indent=1) + "\n")
    return summary


def run_facts(
    run_dir: Path, best: dict[str, Any], earlier: Earlier, seconds: float, device: torch.device
) -> dict[str, Any]:
    """How the run was made, for ``summary.json``: its training time (over every session when
    it was resumed), the best checkpoint, the versions, the command line and the machine."""
    return {
        "seconds": round(earlier.seconds + seconds, 3),
        "session_seconds": round(seconds, 3),
        "sessions": earlier.sessions + 1,
        "best": {"path": str(RunDir(run_dir).best), "epoch": best.get("epoch"), "step": best.get("step")},
        "rnnkit": rnnkit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": list(sys.argv),
        "host": socket.gethostname(),
        "device": str(device),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class _StepModule(torch.nn.Module):
    """A task's step as a module, so that DistributedDataParallel sees each forward."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.model, self.task = task.model, task

    def forward(self, batch: Any, state: Any) -> Step:
        return self.task.step(batch, state)


def _truncate_metrics(path: Path, step: int, size: int | None = None) -> None:
    """Drop log lines written after the checkpoint being resumed from (they will be redone):
    back to the ``size`` bytes the log had at the checkpoint when the record says, else
    (older checkpoints) every line of a later step."""
    if not path.exists():
        return
    if size is not None:
        with path.open("r+b") as f:
            f.truncate(min(size, f.seek(0, 2)))
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by the kill
        if entry.get("step", 0) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
