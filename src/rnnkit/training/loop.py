"""The training loop: train_epoch, fit. Short and flat; the task supplies loss and figures."""

from __future__ import annotations

import contextlib
import json
import math
import platform
import random
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import rnnkit
from rnnkit.analysis.plots import learning_curve
from rnnkit.cells.base import detach_state
from rnnkit.config import RunConfig, to_dict
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic
from rnnkit.models.config import check_task_options
from rnnkit.tasks.base import Step, Task
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.checkpoint import RECORD, load_checkpoint, load_state, save_checkpoint
from rnnkit.training.clipping import clip_gradients
from rnnkit.training.distributed import World, gather_rank_state, rank_state, setup, teardown
from rnnkit.training.guard import RECENT, Rollback, guard, spike
from rnnkit.training.lock import RunLock
from rnnkit.training.progress import Progress, duration, rate_unit
from rnnkit.training.resume import capture, restore
from rnnkit.training.schedules import nonmonotone_trigger, plateau_lr, zaremba_lr

SINGLE = World()  # one process, not distributed


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
    state: object = None  # the hidden state carried into the next window (detached)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError) as err:  # CPU-only torch asserts on "cuda"
        raise RnnkitError(f"device {name!r} is not usable here ({str(err).splitlines()[0]})") from None
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


def train_epoch(
    task: Task,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    history: History,
    cursor: Cursor,
    log: Callable[[dict], None],
    generator: torch.Generator,
    progress: bool = True,
    on_window: Callable[[], None] | None = None,
    average: ParameterAverage | None = None,
    world: World = SINGLE,
    step: Callable | None = None,
    rollback: Rollback | None = None,
    meter: Progress | None = None,
) -> dict[str, float]:
    """One pass over the task's training batches, from ``cursor`` on.

    ``cursor`` is advanced after every batch (``on_window`` is then called: it may save a
    resumable checkpoint); ``average`` (NT-ASGD) takes in the weights after every step.
    Distributed (``world``), ``step`` is the task's step run through DDP and each rank's
    loss is weighted by its share of the step's units. Returns the epoch's running figures
    (summed over ranks). ``rollback`` (train.on_nonfinite = "reduce") keeps the weights
    before each update so that the guard can undo it. ``meter`` shows the progress (a bar,
    or plain lines where stderr is not a terminal); by default, one of this epoch alone.
    """
    t, lr, model = config.train, history.lr, task.model
    step = step or task.step
    model.train()
    start, counted_before = time.perf_counter(), cursor.count
    batches, total, done = task.batches(cursor.epoch, cursor.position, generator)
    meter = meter or Progress(t.epochs, rate_unit(config.task, config.data.level), progress)
    meter.begin(cursor.epoch, total, done)
    rate = 0.0
    try:
        for position, batch in batches:
            # Truncated BPTT: the state flows on from the last window, its gradient stops here.
            state = None if cursor.state is None else detach_state(cursor.state)
            with autocast(t.precision, task_device(task)):
                result = step(batch, state)
            objective = result.loss
            if world.distributed and not getattr(task, "equal_shares", False):
                # DDP averages over ranks: weight each by its share of the step's units
                (units,) = world.sum([result.count], objective.device)
                objective = objective * (result.count * world.size / units)
            for group in optimizer.param_groups:  # AWD-LSTM: shorter windows take smaller steps
                group["lr"] = lr * result.lr_scale
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            norm = clip_gradients(model.parameters(), t.clip_norm, t.clip_value)
            history.step += 1
            cursor.position = position
            loss = result.loss.item()
            if math.isfinite(loss) and math.isfinite(norm) and not spike(loss, cursor.recent, t.loss_spike):
                if rollback is not None:
                    rollback.save()
                optimizer.step()
                cursor.recent = [*cursor.recent[-(RECENT - 1) :], loss]
                if average is not None:
                    average.update()
                cursor.bad, cursor.state = 0, None if result.state is None else detach_state(result.state)
                cursor.nll += result.nll
                cursor.count += result.count
            else:
                cursor.bad = cursor.bad + 1
                lr = guard(task, step, batch, state, loss, norm, t, history, cursor, log, rollback)
                cursor.state = None  # a non-finite state would poison the windows after it
            logged = history.step % t.log_every == 0
            # shown from the first step on; distributed, the sum is a collective: only where
            # every rank measures (log_every, its session's first step)
            figures = None
            if logged or (meter.enabled and not world.distributed) or meter.steps == 0:
                nll, count, new = world.sum(
                    [cursor.nll, cursor.count, cursor.count - counted_before], objective.device
                )
                figures = task.running(nll, count)
                rate = new / (time.perf_counter() - start)
            meter.step(figures, lr, norm, rate)
            if logged:
                log(
                    {
                        "step": history.step,
                        "train_loss": figures["loss"],
                        "lr": lr,
                        "grad_norm": norm,
                        "tokens_per_s": rate,
                    }
                )
            if on_window is not None:
                on_window()
    finally:
        meter.end()  # the bar goes, whatever stopped the epoch
    nll, count, new = world.sum([cursor.nll, cursor.count, cursor.count - counted_before], task_device(task))
    figures = task.running(nll, count)
    figures["tokens_per_s"] = new / (time.perf_counter() - start)
    return figures


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``train.precision``: "bf16" runs forward passes under bfloat16 autocast (matrix
    products in bf16, softmax and losses in fp32; weights, gradients and the optimizer stay
    fp32, so no loss scaling is needed); "fp32" changes nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def task_device(task: Task) -> torch.device:
    return next(task.model.parameters()).device


def make_task(config: RunConfig, corpus, device: torch.device, world: World = SINGLE) -> Task:
    """The task ``config.task`` names, on ``corpus``, its model on ``device``; training on
    ``world``'s share of the data."""
    check_task_options(config.model, config.task, config.data)
    shard = (world.rank, world.size)
    if config.task == "lm":
        return LanguageModelling(config, corpus, device, shard)
    if config.task == "tag":
        from rnnkit.tasks.tagging import Tagging

        return Tagging(config, corpus, device, shard)
    if config.task == "classify":
        from rnnkit.tasks.classification import Classification

        return Classification(config, corpus, device, shard)
    raise RnnkitError(f"task must be one of ['lm', 'tag', 'classify'], got {config.task!r}")


def fit(config: RunConfig, corpus, run_dir: str | Path, progress: bool = True, resume: bool = False) -> dict:
    """Train the task ``config.task`` on ``corpus``, keeping best and last checkpoints in ``run_dir``.

    ``last`` always holds the full training state, saved at every epoch's end and every
    ``train.checkpoint_every`` steps; ``resume=True`` continues from it exactly. The run
    directory is locked while training (:class:`rnnkit.training.lock.RunLock`).
    """
    t = config.train
    run_dir = Path(run_dir)
    if corpus.valid is None:
        raise RnnkitError("the corpus has no validation split: give --valid FILE or a directory with one")
    if not t.clip_norm > 0:
        raise RnnkitError(f"train.clip_norm must be above 0 (inf: measure, never clip), got {t.clip_norm}")
    if not 0 < t.nonfinite_factor < 1:
        raise RnnkitError(f"train.nonfinite_factor must be in (0, 1), got {t.nonfinite_factor}")
    if t.loss_spike != 0 and not t.loss_spike > 1:
        raise RnnkitError(f"train.loss_spike must be 0 (off) or above 1, got {t.loss_spike}")
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


def _fit(
    config: RunConfig, corpus, run_dir: Path, progress: bool, resume: bool, world: World, device
) -> dict:
    t = config.train
    seed_everything(t.seed)
    torch.manual_seed(t.seed + world.rank)  # dropout draws its own masks on each rank
    task = make_task(config, corpus, device, world)
    model = task.model
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(t.seed)
    history, cursor = History(), Cursor()
    before = {"seconds": 0.0, "sessions": 0}  # earlier sessions of this run (--resume)
    average = ParameterAverage(model.parameters())
    rollback = Rollback(model, optimizer) if t.on_nonfinite == "reduce" else None
    if resume and not (run_dir / "last" / RECORD).exists():
        # killed before its first checkpoint: nothing to lose, so start from the beginning
        if world.main:
            print(f"rnnkit: {run_dir}: no checkpoint yet; training from the beginning", file=sys.stderr)
            _truncate_metrics(run_dir / "metrics.jsonl", 0)
        resume = False
    if resume:
        record, tensors = load_state(run_dir / "last")
        tensors = rank_state(world, record, tensors)
        load_checkpoint(run_dir / "last", model)
        restore(record["resume"], tensors, optimizer, history, cursor, generator, device)
        before = {"seconds": record.get("seconds", 0.0), "sessions": record.get("sessions", 1)}
        average.load(record["resume"].get("average", {"active": False}), tensors)
        if rollback is not None:
            rollback.load(record["resume"].get("rollback", False), tensors)
        if world.main:
            _truncate_metrics(run_dir / "metrics.jsonl", history.step, record.get("metrics_bytes"))
    elif world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", json.dumps(to_dict(config), indent=1) + "\n")
        task.save(run_dir)
    step = task.step
    if world.distributed:  # gradients averaged in the backward pass; rank 0's weights to all
        step = DistributedDataParallel(
            _StepModule(task),
            device_ids=[device] if device.type == "cuda" else None,
        )
    progress = progress and world.main
    meter = Progress(t.epochs, rate_unit(config.task, config.data.level), progress)
    metrics = (run_dir / "metrics.jsonl").open("a", encoding="utf-8") if world.main else None

    def log(entry: dict) -> None:
        if metrics is not None:
            metrics.write(json.dumps(entry) + "\n")
            metrics.flush()

    def say(line: str) -> None:
        if world.main:
            meter.write(line)

    def save_last(extra_record: dict | None = None) -> None:
        state_record, tensors = capture(optimizer, history, cursor, generator)
        state_record["average"], average_tensors = average.state()
        if rollback is not None:
            state_record["rollback"], rollback_tensors = rollback.state_tensors()
            tensors.update(rollback_tensors)
        tensors.update(average_tensors)
        tensors = gather_rank_state(world, tensors, device)  # every rank joins; rank 0 writes
        record = {
            "step": history.step,
            **(extra_record or {}),
            "resume": state_record,
            "world_size": world.size,
            # the log as it stood: a resume cuts it back to exactly this (lines of the
            # checkpoint's own step may come before or after it, e.g. an epoch's end)
            "metrics_bytes": None if metrics is None else metrics.tell(),
            "rnnkit": rnnkit.__version__,
            # training time up to here over every session: a resumed run's summary adds them up
            "seconds": before["seconds"] + meter.seconds(),
            "sessions": before["sessions"] + 1,
        }
        if world.main:
            save_checkpoint(run_dir / "last", model, record, history.step, extra=tensors)

    def validate(record: dict) -> tuple[dict, bool]:
        """Validation figures; a new best (no worse than any before) is saved as ``best``."""
        with average.swapped(), autocast(t.precision, device):  # NT-ASGD: the averaged weights are the model
            valid = task.evaluate("valid")
            figure = task.selection(valid)
            improved = figure <= history.best
            if improved:
                if world.main:
                    save_checkpoint(run_dir / "best", model, {**record, "valid": valid}, history.step)
                history.best_epoch = record["epoch"]
        return valid, improved

    def on_window() -> None:
        if t.eval_every and history.step % t.eval_every == 0:  # selection only: schedules look at epochs
            valid, improved = validate({"step": history.step, "epoch": cursor.epoch})
            history.checks.append(task.selection(valid))
            log({"check": cursor.epoch, "step": history.step, **{f"valid_{k}": v for k, v in valid.items()}})
            say(f"step {history.step:5d} | {task.describe('valid', valid)}" + (" | best" if improved else ""))
            model.train()
        if t.checkpoint_every and history.step % t.checkpoint_every == 0:
            save_last()

    try:
        while cursor.epoch <= t.epochs:
            epoch = cursor.epoch
            if cursor.position == 0 and cursor.count == 0:
                history.lr = epoch_lr(config, epoch, history)
                if t.schedule != "plateau" or epoch == 1:  # plateau carries on from history.lr
                    history.lr *= history.lr_factor
            train = train_epoch(
                task,
                optimizer,
                config,
                history,
                cursor,
                log,
                generator,
                progress,
                on_window,
                average=average,
                rollback=rollback,
                world=world,
                step=step,
                meter=meter,
            )
            valid, _ = validate({"step": history.step, "epoch": epoch})
            history.valid_loss.append(task.selection(valid))
            history.since_best = epoch - history.best_epoch
            log(
                {
                    "epoch": epoch,
                    "step": history.step,
                    "lr": history.lr,
                    **{f"train_{k}": v for k, v in train.items() if k != "tokens_per_s"},
                    **{f"valid_{k}": v for k, v in valid.items()},
                    "tokens_per_s": train["tokens_per_s"],
                    "averaging": average.active,
                }
            )
            eta = "" if epoch == t.epochs else f" | ETA {duration(meter.eta())}"
            say(
                f"epoch {epoch}/{t.epochs} | lr {history.lr:.4g} | train "
                + " ".join(f"{k} {v:.4g}" for k, v in train.items() if k != "tokens_per_s")
                + f" | {task.describe('valid', valid)} | {train['tokens_per_s']:.0f} {meter.unit}{eta}"
            )
            if world.main:
                learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
            switch = t.optimizer == "ntasgd" and not average.active
            if switch and nonmonotone_trigger(history.valid_loss, t.nonmono):
                average.start()
                say(
                    f"epoch {epoch}/{t.epochs} | NT-ASGD: validation stopped improving; averaging from now on"
                )
            record = {"epoch": epoch, "valid": valid}
            stop = t.patience is not None and history.since_best > t.patience
            cursor = Cursor(epoch=t.epochs + 1 if stop else epoch + 1)  # the next epoch starts afresh
            save_last(record)
            if stop:
                say(f"early stop: no better validation loss for {history.since_best} epochs")
    finally:
        if metrics is not None:
            metrics.close()
    if not world.main:  # rank 0 evaluates the best model and writes the summary
        return {}
    best = load_checkpoint(run_dir / "best", model)
    with autocast(t.precision, device):
        summary = {"best_valid": task.evaluate("valid")}
        if task.has_split("test"):
            summary["test"] = task.evaluate("test")
    summary["run"] = run_facts(run_dir, best, before, meter.seconds(), device)
    if world.main:
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def run_facts(run_dir: Path, best: dict, before: dict, seconds: float, device: torch.device) -> dict:
    """How the run was made, for ``summary.json``: its training time (over every session when
    it was resumed), the best checkpoint, the versions, the command line and the machine."""
    return {
        "seconds": round(before["seconds"] + seconds, 3),
        "session_seconds": round(seconds, 3),
        "sessions": before["sessions"] + 1,
        "best": {"path": str(run_dir / "best"), "epoch": best.get("epoch"), "step": best.get("step")},
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

    def forward(self, batch, state) -> Step:
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
