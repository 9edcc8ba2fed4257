"""Pictures: a run's learning curve, and the gradient-flow and long-range figures."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np

from rnnkit.fileio import write_bytes_atomic


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only), imported on the first plot:
    commands that draw nothing (score, generate, predict …) start 0.4 s sooner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(metrics: str | os.PathLike, out: str | os.PathLike, title: str = "") -> None:
    """Plot the training figure (every logged step) and the validation one (every epoch, and
    every ``train.eval_every`` steps as crosses).

    Reads ``metrics.jsonl`` as written by :func:`rnnkit.training.loop.fit`; the x axis is
    the training step, the y axis perplexity for language models (the loss in nats for
    other tasks) on a log scale, the learning rate on the right.
    """
    plt = _pyplot()
    rows = [
        json.loads(line) for line in Path(metrics).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    steps = [r for r in rows if "epoch" not in r and "train_loss" in r]
    epochs, last_step = [], 0
    for r in rows:  # an epoch sits at its own step, or after the last logged one
        last_step = r.get("step", last_step)
        if "epoch" in r:
            epochs.append({**r, "step": last_step})
    perplexity = all("valid_ppl" in r for r in epochs)
    shown = _ppl if perplexity else float
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if steps:
        ax.plot(
            [r["step"] for r in steps],
            [shown(r["train_loss"]) for r in steps],
            lw=1,
            label="train (epoch so far)",
        )
    if epochs:
        key = "valid_ppl" if perplexity else "valid_loss"
        ax.plot([r["step"] for r in epochs], [r[key] for r in epochs], "o-", label="validation")
        checks = [r for r in rows if "check" in r]  # train.eval_every: validation within epochs
        if checks:
            ax.plot(
                [r["step"] for r in checks],
                [r[key] for r in checks],
                "x",
                color="C1",
                label="validation (within)",
            )
    ax.set_yscale("log")
    ax.set_xlabel("training step (batch)")
    ax.set_ylabel("perplexity" if perplexity else "loss (nats per token)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    if epochs:
        lr = ax.twinx()
        lr.step([r["step"] for r in epochs], [r["lr"] for r in epochs], where="pre", color="gray", alpha=0.5)
        lr.set_ylim(bottom=0)
        lr.set_ylabel("learning rate", color="gray")
    ax.set_title(title or Path(metrics).parent.name)
    save(fig, out)


def save(fig, out: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically (a crash never leaves half a picture) and close it."""
    plt = _pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(out, buffer.getvalue())


def curves(
    series: dict[str, tuple[list[float], list[float]]],
    out: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = False,
    hline: tuple[float, str] | None = None,
    extra: dict[str, tuple[list[float], list[float]]] | None = None,
) -> None:
    """One line per series ``label: (x, y)``; ``extra`` dashed (bounds); an optional reference line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colors = {}
    for label, (x, y) in series.items():
        (line,) = ax.plot(x, y, "o-" if len(x) < 12 else "-", lw=1.5, ms=4, label=label)
        colors[label] = line.get_color()
    for label, (x, y) in (extra or {}).items():
        ax.plot(x, y, "--", lw=1, color=colors.get(label.split(" ")[0]), label=label)
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls=":", lw=1, label=hline[1])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out)


def heatmap(matrix, out: str | os.PathLike, xlabel: str, ylabel: str, title: str, log: bool = True) -> None:
    """A matrix as an image (log10 of it by default), NaN left blank, with a colour bar."""
    plt = _pyplot()
    values = np.log10(np.where(matrix > 0, matrix, np.nan)) if log else matrix
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="log10" if log else "")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save(fig, out)


def confusion(labels: list[str], matrix, out: str | os.PathLike, title: str) -> None:
    """A confusion matrix with each gold row as fractions of its count (what a label is
    mistaken for), the counts written in the cells that hold any."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.38 * len(labels) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=120)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the gold label's tokens")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(
            j,
            i,
            int(counts[i, j]),
            ha="center",
            va="center",
            fontsize=5,
            color="white" if rows[i, j] > 0.5 else "black",
        )
    ax.set_title(title)
    save(fig, out)


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
