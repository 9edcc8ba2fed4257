"""The training loop: train_epoch, fit. Short and flat; the task supplies loss and figures."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import rnnkit
from rnnkit.analysis.plots import learning_curve
from rnnkit.cells.base import detach_state
from rnnkit.config import RunConfig, to_dict
from rnnkit.data.batching import batchify, bptt_windows, num_windows
from rnnkit.data.corpora import Corpus
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic
from rnnkit.models.config import build_model
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks.lm import evaluate_lm, lm_figures
from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.checkpoint import load_checkpoint, load_state, save_checkpoint
from rnnkit.training.clipping import clip_gradients
from rnnkit.training.resume import capture, restore
from rnnkit.training.schedules import nonmonotone_trigger, plateau_lr, zaremba_lr


@dataclass
class History:
    """What the loop has seen so far: drives the schedule, early stopping and 'best'."""

    valid_loss: list[float] = field(default_factory=list)
    lr: float = 0.0
    step: int = 0
    since_best: int = 0

    @property
    def best(self) -> float:
        return min(self.valid_loss, default=math.inf)


@dataclass
class Cursor:
    """Where training stands inside an epoch; saved with every resumable checkpoint."""

    epoch: int = 1
    position: int = 0  # the next window starts here: always a window boundary
    nll: float = 0.0
    count: int = 0
    bad: int = 0
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
    model: LanguageModel,
    columns: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    history: History,
    cursor: Cursor,
    log: Callable[[dict], None],
    generator: torch.Generator,
    progress: bool = True,
    on_window: Callable[[], None] | None = None,
    average: ParameterAverage | None = None,
) -> dict[str, float]:
    """One pass over the training stream by truncated BPTT, from ``cursor`` on.

    ``cursor`` is advanced after every window (``on_window`` is then called: it may save
    a resumable checkpoint); ``average`` (NT-ASGD) takes in the weights after every step.
    Returns the epoch's loss figures.
    """
    t, lr = config.train, history.lr
    model.train()
    start, counted_before = time.perf_counter(), cursor.count
    windows = bptt_windows(columns, t.bptt, t.variable_bptt, generator, start=cursor.position)
    total = num_windows(columns.shape[0], t.bptt)
    bar = tqdm(
        windows, total=total, initial=cursor.position // t.bptt, disable=not progress, unit="win", leave=False
    )
    for position, x, y in bar:
        # Truncated BPTT: the state flows on from the last window, its gradient stops here.
        state = None if cursor.state is None else detach_state(cursor.state)
        for group in optimizer.param_groups:  # AWD-LSTM: shorter windows take smaller steps
            group["lr"] = lr * x.shape[0] / t.bptt if t.variable_bptt else lr
        logp, state = model.log_prob(x, y, state)
        loss = -logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(model.parameters(), t.clip_norm, t.clip_value)
        history.step += 1
        cursor.position = position + x.shape[0]
        if math.isfinite(loss.item()) and math.isfinite(norm):
            optimizer.step()
            if average is not None:
                average.update()
            cursor.bad, cursor.state = 0, detach_state(state)
            cursor.nll += -logp.sum().item()
            cursor.count += y.numel()
        else:
            cursor.bad, cursor.state = cursor.bad + 1, None  # a non-finite state would poison the rest
            tqdm.write(
                f"rnnkit: step {history.step}: loss {loss.item()}, grad norm {norm}: step skipped",
                file=sys.stderr,
            )
            if cursor.bad >= t.max_bad_steps:
                raise RnnkitError(
                    f"{cursor.bad} non-finite steps in a row (last: step {history.step}); lower train.lr or "
                    "set train.clip_norm"
                )
        if history.step % t.log_every == 0:
            figures = lm_figures(cursor.nll, cursor.count)
            rate = (cursor.count - counted_before) / (time.perf_counter() - start)
            bar.set_postfix(
                loss=f"{figures['loss']:.3f}",
                ppl=f"{figures['ppl']:.1f}",
                lr=f"{lr:.3g}",
                gnorm=f"{norm:.2f}",
                tok_s=f"{rate:.0f}",
            )
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
    figures = lm_figures(cursor.nll, cursor.count)
    figures["tokens_per_s"] = (cursor.count - counted_before) / (time.perf_counter() - start)
    return figures


def fit(
    config: RunConfig, corpus: Corpus, run_dir: str | Path, progress: bool = True, resume: bool = False
) -> dict:
    """Train a language model by ``config`` on ``corpus``, keeping best and last checkpoints in ``run_dir``.

    ``last`` always holds the full training state, saved at every epoch's end and every
    ``train.checkpoint_every`` steps; ``resume=True`` continues from it exactly.
    """
    t = config.train
    run_dir = Path(run_dir)
    if corpus.valid is None:
        raise RnnkitError("the corpus has no validation split: give --valid FILE or a directory with one")
    if t.threads:
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    seed_everything(t.seed)
    model = build_model(config.model, len(corpus.vocab)).to(device)
    optimizer = make_optimizer(model, config)
    columns = batchify(corpus.train, t.batch_size).to(device)
    generator = torch.Generator().manual_seed(t.seed)
    history, cursor = History(), Cursor()
    average = ParameterAverage(model.parameters())
    if resume:
        record, tensors = load_state(run_dir / "last")
        load_checkpoint(run_dir / "last", model)
        restore(record["resume"], tensors, optimizer, history, cursor, generator, device)
        average.load(record["resume"].get("average", {"active": False}), tensors)
        _truncate_metrics(run_dir / "metrics.jsonl", history.step)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.json", json.dumps(to_dict(config), indent=1) + "\n")
        corpus.vocab.save(run_dir / "vocab.json")
        corpus.codec.save(run_dir)
    metrics = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")

    def log(entry: dict) -> None:
        metrics.write(json.dumps(entry) + "\n")
        metrics.flush()

    def save_last(extra_record: dict | None = None) -> None:
        state_record, tensors = capture(optimizer, history, cursor, generator)
        state_record["average"], average_tensors = average.state()
        tensors.update(average_tensors)
        record = {
            "step": history.step,
            **(extra_record or {}),
            "resume": state_record,
            "rnnkit": rnnkit.__version__,
        }
        save_checkpoint(run_dir / "last", model, record, history.step, extra=tensors)

    def on_window() -> None:
        if t.checkpoint_every and history.step % t.checkpoint_every == 0:
            save_last()

    try:
        while cursor.epoch <= t.epochs:
            epoch = cursor.epoch
            if cursor.position == 0 and cursor.count == 0:
                history.lr = epoch_lr(config, epoch, history)
            train = train_epoch(
                model,
                columns,
                optimizer,
                config,
                history,
                cursor,
                log,
                generator,
                progress,
                on_window,
                average=average,
            )
            with average.swapped():  # NT-ASGD: the averaged weights are the model
                valid = evaluate_lm(model, corpus.valid, t.eval_batch_size, t.bptt, device)
                history.valid_loss.append(valid["loss"])
                improved = valid["loss"] <= history.best
                if improved:
                    record = {"step": history.step, "epoch": epoch, "valid": valid}
                    save_checkpoint(run_dir / "best", model, record, history.step)
            history.since_best = 0 if improved else history.since_best + 1
            log(
                {
                    "epoch": epoch,
                    "step": history.step,
                    "lr": history.lr,
                    "train_loss": train["loss"],
                    "train_ppl": train["ppl"],
                    "valid_loss": valid["loss"],
                    "valid_ppl": valid["ppl"],
                    "tokens_per_s": train["tokens_per_s"],
                    "averaging": average.active,
                }
            )
            tqdm.write(
                f"epoch {epoch:3d} | lr {history.lr:.4g} | train ppl {train['ppl']:8.2f} | "
                f"valid ppl {valid['ppl']:8.2f} | {train['tokens_per_s']:.0f} tok/s",
                file=sys.stderr,
            )
            learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
            switch = t.optimizer == "ntasgd" and not average.active
            if switch and nonmonotone_trigger(history.valid_loss, t.nonmono):
                average.start()
                tqdm.write(
                    f"epoch {epoch:3d} | NT-ASGD: validation stopped improving; averaging from now on",
                    file=sys.stderr,
                )
            record = {"epoch": epoch, "valid": valid}
            stop = t.patience is not None and history.since_best > t.patience
            cursor = Cursor(epoch=t.epochs + 1 if stop else epoch + 1)  # the next epoch starts afresh
            save_last(record)
            if stop:
                tqdm.write(
                    f"early stop: no better validation loss for {history.since_best} epochs", file=sys.stderr
                )
    finally:
        metrics.close()
    load_checkpoint(run_dir / "best", model)
    summary = {"best_valid": evaluate_lm(model, corpus.valid, t.eval_batch_size, t.bptt, device)}
    if corpus.test is not None:
        summary["test"] = evaluate_lm(model, corpus.test, t.eval_batch_size, t.bptt, device)
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint being resumed from (they will be redone)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if json.loads(line).get("step", 0) <= step
    ]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
