"""Initialisation on the adding problem: identity W_hh (IRNN, Le et al. 2015) vs random ReLU and tanh Elman.

``rnnkit experiment init``: the three cells trained at one length T by :func:`rnnkit.experiments.adding.run`,
their test MSE against the baseline and their training curves.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnkit.analysis import plots
from rnnkit.experiments import adding
from rnnkit.experiments.common import TINY_STEPS, mse_flags, suffix

FILES = ("init_training.png",)
"""What :func:`draw` writes."""


def experiment(seed: int, scale: str, device: torch.device) -> dict:
    """The experiment at ``scale``: each initialisation at one T, a table on stdout; returns the results."""
    T = {"tiny": 10, "small": 100, "full": 150}[scale]
    steps = {"tiny": TINY_STEPS, "small": 2000, "full": 5000}[scale]
    setup = adding.Setup(steps=steps, eval_sequences=100 if scale == "tiny" else 1000)
    labels = ("irnn", "elman-relu", "elman-tanh")
    print(f"initialisation on the adding problem at T = {T}, seed {seed}, on {device}: {setup}")
    print(f"{'cell':12} {'init':>18} {'lr':>7} {'test MSE':>9} {'solved':>7}")
    rows, curves = [], {}
    for label in labels:
        r = adding.run(label, T, setup, seed, device)
        init = "W_hh = I" if label == "irnn" else "torch default"
        lr = adding.CELLS[label][2]
        row = {"cell": label, "init": init, "T": T, "lr": lr, "mse": r.mse, "solved": r.solved}
        mse_flags([row], adding.BASELINE)
        print(
            f"{label:12} {init:>18} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7}" + suffix(row),
            flush=True,
        )
        rows.append(row)
        curves[label] = r.curve
    return {"setup": setup.__dict__, "T": T, "baseline": adding.BASELINE, "rows": rows, "curves": curves}


def draw(out: Path, results: dict, caption: str) -> None:
    """Each cell's training MSE by step, the baseline drawn across (:data:`FILES`)."""
    plots.measured_curves(
        {k: ([s for s, _ in c], [v for _, v in c]) for k, c in results["curves"].items()},
        out / "init_training.png",
        "training step",
        "training MSE (one batch)",
        f"Identity initialisation on the adding problem, T = {results['T']}" + caption,
        log_y=True,
        hline=(results["baseline"], "always predict 1"),
    )
