"""Pictures of a run: the learning curve from its metrics log."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from rnnkit.fileio import write_bytes_atomic


def learning_curve(metrics: str | os.PathLike, out: str | os.PathLike, title: str = "") -> None:
    """Plot training perplexity (every logged step) and validation perplexity (every epoch).

    Reads ``metrics.jsonl`` as written by :func:`rnnkit.training.loop.fit`; the x axis is
    the training step, the y axis perplexity on a log scale, the learning rate on the right.
    """
    rows = [
        json.loads(line) for line in Path(metrics).read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    steps = [r for r in rows if "epoch" not in r and "train_loss" in r]
    epochs, last_step = [], 0
    for r in rows:  # an epoch sits at its own step, or after the last logged one
        last_step = r.get("step", last_step)
        if "epoch" in r:
            epochs.append({**r, "step": last_step})
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if steps:
        ax.plot(
            [r["step"] for r in steps],
            [_ppl(r["train_loss"]) for r in steps],
            lw=1,
            label="train (epoch so far)",
        )
    if epochs:
        ax.plot([r["step"] for r in epochs], [r["valid_ppl"] for r in epochs], "o-", label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("training step (window)")
    ax.set_ylabel("perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right")
    if epochs:
        lr = ax.twinx()
        lr.step([r["step"] for r in epochs], [r["lr"] for r in epochs], where="pre", color="gray", alpha=0.5)
        lr.set_ylim(bottom=0)
        lr.set_ylabel("learning rate", color="gray")
    ax.set_title(title or Path(metrics).parent.name)
    fig.tight_layout()
    tmp = Path(out).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    write_bytes_atomic(out, tmp.read_bytes())
    tmp.unlink()


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
