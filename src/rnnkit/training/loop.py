"""The training loop: train_epoch, fit. Short and flat; the task supplies loss and figures."""

from __future__ import annotations

import json
import math
import random
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
from rnnkit.training.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.training.clipping import clip_gradients
from rnnkit.training.schedules import plateau_lr, zaremba_lr


@dataclass
class History:
    """What the loop has seen so far: drives the schedule, early stopping and 'best'."""

    valid_loss: list[float] = field(default_factory=list)
    lr: float = 0.0
    step: int = 0

    @property
    def best(self) -> float:
        return min(self.valid_loss, default=math.inf)


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
    lr: float,
    history: History,
    log: Callable[[dict], None],
    generator: torch.Generator,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over the training stream by truncated BPTT; returns its loss figures."""
    t = config.train
    model.train()
    state, nll, count, bad = None, 0.0, 0, 0
    start = time.perf_counter()
    windows = bptt_windows(columns, t.bptt, variable=t.variable_bptt, generator=generator)
    bar = tqdm(
        windows, total=num_windows(columns.shape[0], t.bptt), disable=not progress, unit="win", leave=False
    )
    for _, x, y in bar:
        if state is not None:
            # Truncated BPTT: the state flows on, its gradient stops at the window boundary.
            state = detach_state(state)
        for group in optimizer.param_groups:  # AWD-LSTM: shorter windows take smaller steps
            group["lr"] = lr * x.shape[0] / t.bptt if t.variable_bptt else lr
        logp, state = model.log_prob(x, y, state)
        loss = -logp.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(model.parameters(), t.clip_norm, t.clip_value)
        history.step += 1
        if not (math.isfinite(loss.item()) and math.isfinite(norm)):
            bad += 1
            state = None  # a non-finite state would poison every later window
            tqdm.write(f"rnnkit: step {history.step}: loss {loss.item()}, grad norm {norm}: step skipped")
            if bad >= t.max_bad_steps:
                raise RnnkitError(
                    f"{bad} non-finite steps in a row (last: step {history.step}); lower train.lr or "
                    "set train.clip_norm"
                )
            continue
        bad = 0
        optimizer.step()
        nll += -logp.sum().item()
        count += y.numel()
        if history.step % t.log_every == 0:
            figures = lm_figures(nll, count)
            rate = count / (time.perf_counter() - start)
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
    figures = lm_figures(nll, count)
    figures["tokens_per_s"] = count / (time.perf_counter() - start)
    return figures


def fit(config: RunConfig, corpus: Corpus, run_dir: str | Path, progress: bool = True) -> dict:
    """Train a language model by ``config`` on ``corpus``; keep best and last checkpoints in ``run_dir``."""
    t = config.train
    run_dir = Path(run_dir)
    if corpus.valid is None:
        raise RnnkitError("the corpus has no validation split: give --valid FILE or a directory with one")
    if t.threads:
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    seed_everything(t.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(to_dict(config), indent=1) + "\n")
    corpus.vocab.save(run_dir / "vocab.json")
    model = build_model(config.model, len(corpus.vocab)).to(device)
    optimizer = make_optimizer(model, config)
    columns = batchify(corpus.train, t.batch_size).to(device)
    generator = torch.Generator().manual_seed(t.seed)
    history, since_best = History(), 0
    metrics = (run_dir / "metrics.jsonl").open("a", encoding="utf-8")

    def log(entry: dict) -> None:
        metrics.write(json.dumps(entry) + "\n")
        metrics.flush()

    try:
        for epoch in range(1, t.epochs + 1):
            history.lr = epoch_lr(config, epoch, history)
            train = train_epoch(
                model, columns, optimizer, config, history.lr, history, log, generator, progress
            )
            valid = evaluate_lm(model, corpus.valid, t.eval_batch_size, t.bptt, device)
            history.valid_loss.append(valid["loss"])
            entry = {
                "epoch": epoch,
                "lr": history.lr,
                "train_loss": train["loss"],
                "train_ppl": train["ppl"],
                "valid_loss": valid["loss"],
                "valid_ppl": valid["ppl"],
                "tokens_per_s": train["tokens_per_s"],
            }
            log(entry)
            tqdm.write(
                f"epoch {epoch:3d} | lr {history.lr:.4g} | train ppl {train['ppl']:8.2f} | "
                f"valid ppl {valid['ppl']:8.2f} | {train['tokens_per_s']:.0f} tok/s"
            )
            learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
            record = {"epoch": epoch, "step": history.step, "valid": valid, "rnnkit": rnnkit.__version__}
            save_checkpoint(run_dir / "last", model, record, history.step)
            if valid["loss"] <= history.best:
                save_checkpoint(run_dir / "best", model, record, history.step)
                since_best = 0
            else:
                since_best += 1
                if t.patience is not None and since_best > t.patience:
                    tqdm.write(f"early stop: no better validation loss for {since_best} epochs")
                    break
    finally:
        metrics.close()
    load_checkpoint(run_dir / "best", model)
    summary = {"best_valid": evaluate_lm(model, corpus.valid, t.eval_batch_size, t.bptt, device)}
    if corpus.test is not None:
        summary["test"] = evaluate_lm(model, corpus.test, t.eval_batch_size, t.bptt, device)
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
