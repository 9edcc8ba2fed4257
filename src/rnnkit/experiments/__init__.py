"""The lecture's experiments, each runnable as ``rnnkit experiment NAME`` with a fixed seed.

=============  =====================================================================
``adding``     the adding problem at T = 50..400: tanh Elman, IRNN, GRU, LSTM vs 0.167
``clipping``   an IRNN language model at high learning rates, clipped and not
``long-range`` "Jane ... said hi to ___": accuracy and gradient by distance, all cells
``init``       identity init (IRNN) vs random-init ReLU and tanh Elman on the adding problem
=============  =====================================================================

Each prints a table, writes ``results.json`` and plots to its output directory, and has
three scales: ``tiny`` (seconds: what CI runs), ``small`` (minutes: the default) and
``full`` (the grid of the write-up; hours on a CPU, run it in the background).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from rnnkit.analysis import plots
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic

SCALES = ("tiny", "small", "full")


def _adding(out: Path, seed: int, scale: str) -> dict:
    from rnnkit.experiments import adding

    lengths = {"tiny": (10, 20), "small": (50, 100), "full": (50, 100, 200, 400)}[scale]
    steps = {"tiny": 20, "small": 1500, "full": 5000}[scale]
    setup = adding.Setup(steps=steps, eval_sequences=100 if scale == "tiny" else 1000)
    labels = ("elman-tanh", "irnn", "gru", "lstm")
    print(f"adding problem, seed {seed}: {setup}; baseline MSE (always predict 1) {adding.BASELINE:.3f}")
    print(f"{'cell':12} {'T':>5} {'lr':>7} {'test MSE':>9} {'solved':>7} {'train s':>8}")
    rows, curves = [], {}
    for T in lengths:
        for label in labels:
            r = adding.run(label, T, setup, seed)
            lr = adding.CELLS[label][2]
            print(
                f"{label:12} {T:5d} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7} {r.seconds:8.1f}",
                flush=True,
            )
            rows.append(
                {"cell": label, "T": T, "lr": lr, "mse": r.mse, "solved": r.solved, "seconds": r.seconds}
            )
            curves[f"{label} T={T}"] = r.curve
    by_cell = {
        label: (
            [row["T"] for row in rows if row["cell"] == label],
            [row["mse"] for row in rows if row["cell"] == label],
        )
        for label in labels
    }
    plots.curves(
        by_cell,
        out / "adding_mse.png",
        "sequence length T",
        "test MSE",
        "The adding problem",
        log_y=True,
        hline=(adding.BASELINE, "always predict 1"),
    )
    return {"setup": setup.__dict__, "baseline": adding.BASELINE, "rows": rows, "curves": curves}


def _init(out: Path, seed: int, scale: str) -> dict:
    from rnnkit.experiments import adding

    T = {"tiny": 10, "small": 100, "full": 150}[scale]
    steps = {"tiny": 20, "small": 2000, "full": 5000}[scale]
    setup = adding.Setup(steps=steps, eval_sequences=100 if scale == "tiny" else 1000)
    labels = ("irnn", "elman-relu", "elman-tanh")
    print(f"initialisation on the adding problem at T = {T}, seed {seed}: {setup}")
    print(f"{'cell':12} {'init':>18} {'lr':>7} {'test MSE':>9} {'solved':>7}")
    rows, curves = [], {}
    for label in labels:
        r = adding.run(label, T, setup, seed)
        init = "W_hh = I" if label == "irnn" else "torch default"
        lr = adding.CELLS[label][2]
        print(f"{label:12} {init:>18} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7}", flush=True)
        rows.append({"cell": label, "init": init, "T": T, "lr": lr, "mse": r.mse, "solved": r.solved})
        curves[label] = r.curve
    plots.curves(
        {k: ([s for s, _ in c], [max(v, 1e-12) for _, v in c]) for k, c in curves.items()},
        out / "init_training.png",
        "training step",
        "training MSE",
        f"Identity initialisation on the adding problem, T = {T}",
        log_y=True,
        hline=(adding.BASELINE, "always predict 1"),
    )
    return {"setup": setup.__dict__, "T": T, "rows": rows, "curves": curves}


def _clipping(out: Path, seed: int, scale: str) -> dict:
    from rnnkit.experiments import clipping

    setup = clipping.Setup(steps={"tiny": 20, "small": 400, "full": 2000}[scale])
    print(f"clipping: an IRNN language model by SGD, seed {seed}: {setup}")
    print(f"{'lr':>5} {'clipped':>8} {'final loss':>10} {'max norm':>10} {'exploding':>9} {'diverged':>9}")
    rows, series, norms = [], {}, {}
    for lr in setup.rates:
        for clipped in (False, True):
            r = clipping.run(lr, clipped, setup, seed)
            finite = [n for n in r.norms if math.isfinite(n)]
            row = {
                "lr": lr,
                "clipped": clipped,
                "final_loss": r.losses[-1],
                "max_norm": max(finite) if finite else math.inf,
                "exploding_steps": r.exploding,
                "diverged": r.diverged,
                "stopped_at": r.stopped_at,
            }
            rows.append(row)
            stop = "" if r.stopped_at is None else f" (step {r.stopped_at})"
            print(
                f"{lr:5.2g} {'yes' if clipped else 'no':>8} {r.losses[-1]:10.3f} {row['max_norm']:10.2e} "
                f"{r.exploding:9d} {('yes' + stop) if r.diverged else 'no':>9}",
                flush=True,
            )
            label = f"lr {lr:g}, {'clipped' if clipped else 'not clipped'}"
            norms[label] = (list(range(len(r.norms))), [n if math.isfinite(n) else 1e12 for n in r.norms])
            series[label] = (
                list(range(len(r.losses))),
                [min(v, 1e3) if math.isfinite(v) else 1e3 for v in r.losses],
            )
    plots.curves(
        series,
        out / "clipping_loss.png",
        "step",
        "training loss (nats; 1000 = not finite)",
        "Clipping",
        log_y=True,
    )
    plots.curves(
        norms,
        out / "clipping_norms.png",
        "step",
        "gradient norm before clipping (1e12 = not finite)",
        f"Exploding gradients (clipped runs are cut to {setup.clip:g})",
        log_y=True,
    )
    return {"setup": setup.__dict__, "rows": rows}


def _long_range(out: Path, seed: int, scale: str) -> dict:
    from rnnkit.experiments import long_range

    setup = {
        "tiny": long_range.Setup(length=21, steps=20, hidden=16, eval_sequences=32),
        "small": long_range.Setup(length=101, steps=2000),
        "full": long_range.Setup(length=101, steps=6000),
    }[scale]
    task = long_range.LongRange()
    distances = sorted({d for d in (4, 5, 10, 20, 30, 40, 50, 60, 80, 100) if d <= setup.length - 1})
    print(f"long-range probe, seed {seed}: {setup}; chance {task.chance:.3f}")
    print(f"{'cell':14} " + " ".join(f"{'d=' + str(d):>6}" for d in distances) + f" {'train s':>8}")
    rows, gradients = [], {}
    for label in long_range.CELLS:
        model, r = long_range.train(label, setup, seed, task)
        acc = {d: long_range.accuracy(model, task, d, setup) for d in distances}
        gradients[label] = long_range.gradient_by_distance(model, task, setup, list(range(setup.length - 1)))
        print(
            f"{label:14} " + " ".join(f"{acc[d]:6.2f}" for d in distances) + f" {r.seconds:8.1f}", flush=True
        )
        rows.append({"cell": label, "accuracy": acc, "gradient": gradients[label], "seconds": r.seconds})
    plots.curves(
        {row["cell"]: (list(row["accuracy"]), list(row["accuracy"].values())) for row in rows},
        out / "long_range_accuracy.png",
        "distance d",
        "accuracy at the blank",
        "Who remembers the name d words back?",
        hline=(task.chance, "chance"),
    )
    plots.curves(
        {k: (list(g), [max(v, 1e-300) for v in g.values()]) for k, g in gradients.items()},
        out / "long_range_gradient.png",
        "distance d = t - k",
        "||∂E_t/∂h_(t-d)||",
        "Gradient reaching d steps back (trained models)",
        log_y=True,
    )
    return {"setup": setup.__dict__, "chance": task.chance, "rows": rows}


EXPERIMENTS: dict[str, Callable[[Path, int, str], dict]] = {
    "adding": _adding,
    "clipping": _clipping,
    "long-range": _long_range,
    "init": _init,
}


def run_experiment(name: str, out: str | Path | None = None, seed: int = 0, scale: str = "small") -> dict:
    """Run experiment ``name`` at ``scale``; results.json and plots go to ``out``."""
    if name not in EXPERIMENTS:
        raise RnnkitError(f"unknown experiment {name!r}; the experiments are: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise RnnkitError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    out = Path(out or f"rnnkit-experiments/{name}-{scale}")
    out.mkdir(parents=True, exist_ok=True)
    results = {"experiment": name, "seed": seed, "scale": scale, **EXPERIMENTS[name](out, seed, scale)}
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=True) + "\n")
    print(f"results and plots: {out.resolve()}")
    return results
