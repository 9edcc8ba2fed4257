"""The lecture's experiments, each runnable as ``rnnkit experiment NAME`` with a fixed seed.

=============  =====================================================================
``adding``     the adding problem at T = 50..400: tanh Elman, IRNN, GRU, LSTM vs 0.167
``clipping``   an IRNN language model at high learning rates, clipped and not
``long-range`` "Jane ... said hi to ___": accuracy and gradient by distance, all cells
``init``       identity init (IRNN) vs random-init ReLU and tanh Elman on the adding problem
=============  =====================================================================

Each prints a table, writes ``results.json`` and plots to its output directory, and has
three scales: ``tiny`` (seconds: what CI runs, a smoke test whose numbers are not evidence,
and says so), ``small`` (minutes: the default) and ``full`` (the grid of the write-up; hours
on a CPU, run it in the background). A figure below chance or no better than the trivial
baseline is flagged (``!`` in the table, ``flags`` in its row); a number that is not finite
is ``null`` in ``results.json`` (strict JSON) and an ``x`` in the plots, never a stand-in.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from rnnkit.analysis import plots
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic

SCALES = ("tiny", "small", "full")
TINY_STEPS = 20  # training steps per run at --scale tiny

RESULTS = "results.json"
FILES = {  # every file each experiment writes beside results.json
    "adding": ("adding_mse.png",),
    "clipping": ("clipping_loss.png", "clipping_norms.png"),
    "long-range": ("long_range_accuracy.png", "long_range_gradient.png"),
    "init": ("init_training.png",),
}
OWNED = (RESULTS, *sorted({name for names in FILES.values() for name in names}))
"""What a call may remove from its folder (an earlier call's files, of any experiment): nothing else."""

SMOKE_CAPTION = "(--scale tiny: a smoke test, not evidence)"
TINY_WARNING = (
    "warning: --scale tiny is a smoke test ({steps} training steps per run): it shows that the code runs, "
    "its numbers are not evidence of anything; use --scale small or full"
)


def strict_json(value):
    """``value`` with every non-finite float replaced by None: JSON has no NaN or infinity."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def clear_previous(out: Path, names: Iterable[str]) -> tuple[list[str], int]:
    """Remove the files called ``names`` from ``out`` (an earlier call's output), nothing else.

    Returns the names removed and how many other entries ``out`` holds (left as they are).
    """
    names = set(names)
    removed = []
    for name in sorted(names):
        path = out / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(name)
    others = sum(1 for p in out.iterdir() if p.name not in names) if out.is_dir() else 0
    return removed, others


def report_folder(out: Path, written: list[str], removed: list[str], others: int, what: str) -> None:
    """Print where a call wrote (and what of an earlier call it replaced), for a human."""
    if removed:
        print(f"removed an earlier call's {', '.join(removed)} from {out.resolve()}")
    left = f"; {others} other {'entry' if others == 1 else 'entries'} there left untouched" if others else ""
    print(f"{what}: {out.resolve()} ({', '.join(written)}{left})")


def _flag(row: dict, text: str) -> None:
    row.setdefault("flags", []).append(text)


def _suffix(row: dict) -> str:
    return ("  ! " + "; ".join(row["flags"])) if row.get("flags") else ""


def _mse_flags(rows: list[dict], baseline: float) -> None:
    for row in rows:
        row.setdefault("flags", [])
        if not math.isfinite(row["mse"]):
            _flag(row, "MSE not finite (diverged)")
        elif row["mse"] >= baseline:
            _flag(row, f"no better than always predicting 1 (MSE {baseline:.3f})")


def _adding(seed: int, scale: str, device: torch.device) -> dict:
    from rnnkit.experiments import adding

    lengths = {"tiny": (10, 20), "small": (50, 100), "full": (50, 100, 200, 400)}[scale]
    steps = {"tiny": TINY_STEPS, "small": 1500, "full": 5000}[scale]
    setup = adding.Setup(steps=steps, eval_sequences=100 if scale == "tiny" else 1000)
    labels = ("elman-tanh", "irnn", "gru", "lstm")
    print(
        f"adding problem, seed {seed}, on {device}: {setup}; "
        f"baseline MSE (always predict 1) {adding.BASELINE:.3f}"
    )
    print(f"{'cell':12} {'T':>5} {'lr':>7} {'test MSE':>9} {'solved':>7} {'train s':>8}")
    rows, curves = [], {}
    for T in lengths:
        for label in labels:
            r = adding.run(label, T, setup, seed, device)
            lr = adding.CELLS[label][2]
            row = {"cell": label, "T": T, "lr": lr, "mse": r.mse, "solved": r.solved, "seconds": r.seconds}
            _mse_flags([row], adding.BASELINE)
            print(
                f"{label:12} {T:5d} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7} {r.seconds:8.1f}"
                + _suffix(row),
                flush=True,
            )
            rows.append(row)
            curves[f"{label} T={T}"] = r.curve
    return {"setup": setup.__dict__, "baseline": adding.BASELINE, "rows": rows, "curves": curves}


def _draw_adding(out: Path, results: dict, caption: str) -> None:
    labels = dict.fromkeys(row["cell"] for row in results["rows"])
    plots.measured_curves(
        {
            label: (
                [row["T"] for row in results["rows"] if row["cell"] == label],
                [row["mse"] for row in results["rows"] if row["cell"] == label],
            )
            for label in labels
        },
        out / "adding_mse.png",
        "sequence length T",
        "test MSE",
        "The adding problem" + caption,
        log_y=True,
        hline=(results["baseline"], "always predict 1"),
    )


def _init(seed: int, scale: str, device: torch.device) -> dict:
    from rnnkit.experiments import adding

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
        _mse_flags([row], adding.BASELINE)
        print(
            f"{label:12} {init:>18} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7}" + _suffix(row),
            flush=True,
        )
        rows.append(row)
        curves[label] = r.curve
    return {"setup": setup.__dict__, "T": T, "baseline": adding.BASELINE, "rows": rows, "curves": curves}


def _draw_init(out: Path, results: dict, caption: str) -> None:
    plots.measured_curves(
        {k: ([s for s, _ in c], [v for _, v in c]) for k, c in results["curves"].items()},
        out / "init_training.png",
        "training step",
        "training MSE (one batch)",
        f"Identity initialisation on the adding problem, T = {results['T']}" + caption,
        log_y=True,
        hline=(results["baseline"], "always predict 1"),
    )


def _clipping(seed: int, scale: str, device: torch.device) -> dict:
    from rnnkit.data.synthetic import LongRange
    from rnnkit.experiments import clipping

    setup = clipping.Setup(steps={"tiny": TINY_STEPS, "small": 400, "full": 2000}[scale])
    vocab = len(LongRange().tokens)
    uniform = math.log(vocab)
    print(f"clipping: an IRNN language model by SGD, seed {seed}, on {device}: {setup}")
    print(f"{'lr':>5} {'clipped':>8} {'final loss':>10} {'max norm':>10} {'exploding':>9} {'diverged':>9}")
    rows = []
    for lr in setup.rates:
        for clipped in (False, True):
            r = clipping.run(lr, clipped, setup, seed, device)
            finite = [n for n in r.norms if math.isfinite(n)]
            row = {
                "lr": lr,
                "clipped": clipped,
                "final_loss": r.losses[-1],
                "max_norm": max(finite) if finite else math.inf,
                "exploding_steps": r.exploding,
                "diverged": r.diverged,
                "stopped_at": r.stopped_at,
                "flags": [],
                "losses": r.losses,
                "norms": r.norms,
            }
            if math.isfinite(r.losses[-1]) and r.losses[-1] >= uniform:
                _flag(
                    row,
                    f"final loss ≥ ln {vocab} = {uniform:.2f}: no better than a uniform guess",
                )
            rows.append(row)
            stop = "" if r.stopped_at is None else f" (step {r.stopped_at})"
            print(
                f"{lr:5.2g} {'yes' if clipped else 'no':>8} {r.losses[-1]:10.3f} {row['max_norm']:10.2e} "
                f"{r.exploding:9d} {('yes' + stop) if r.diverged else 'no':>9}" + _suffix(row),
                flush=True,
            )
    return {"setup": setup.__dict__, "vocab": vocab, "uniform_loss": uniform, "rows": rows}


def _draw_clipping(out: Path, results: dict, caption: str) -> None:
    clip = results["setup"]["clip"]

    def series(key: str) -> dict:
        return {
            f"lr {row['lr']:g}, {'clipped' if row['clipped'] else 'not clipped'}": (
                list(range(len(row[key]))),
                row[key],
            )
            for row in results["rows"]
        }

    stopped = "not finite: the run diverged and stopped here"
    plots.measured_curves(
        series("losses"),
        out / "clipping_loss.png",
        "training step",
        "training loss (nats, one batch)",
        "Clipping: an IRNN language model by SGD" + caption,
        log_y=True,
        hline=(results["uniform_loss"], f"uniform guess (ln {results['vocab']})"),
        lost=stopped,
    )
    # clip_gradients returns (and the run logs) the norm *before* clipping; a clipped run's
    # applied update is then scaled down to norm `clip`, so its plotted norm may exceed it.
    plots.measured_curves(
        series("norms"),
        out / "clipping_norms.png",
        "training step",
        "gradient norm before clipping",
        f"Exploding gradients: the logged norm is before clipping\n"
        f"(a clipped run's applied update is scaled down to norm {clip:g})" + caption,
        log_y=True,
        hline=(clip, f"clipping threshold {clip:g}"),
        lost=stopped,
    )


def _long_range(seed: int, scale: str, device: torch.device) -> dict:
    from rnnkit.experiments import long_range

    setup = {
        "tiny": long_range.Setup(length=21, steps=TINY_STEPS, hidden=16, eval_sequences=32),
        "small": long_range.Setup(length=101, steps=2000),
        "full": long_range.Setup(length=101, steps=6000),
    }[scale]
    task = long_range.LongRange()
    # an accuracy this far under chance (two binomial standard errors) is no forgetting:
    # the model does not even guess a name at the blank at random
    floor = task.chance - 2 * math.sqrt(task.chance * (1 - task.chance) / setup.eval_sequences)
    distances = sorted({d for d in (4, 5, 10, 20, 30, 40, 50, 60, 80, 100) if d <= setup.length - 1})
    print(f"long-range probe, seed {seed}, on {device}: {setup}; chance {task.chance:.3f}")
    print(f"{'cell':14} " + " ".join(f"{'d=' + str(d):>6}" for d in distances) + f" {'train s':>8}")
    rows = []
    for label in long_range.CELLS:
        model, r = long_range.train(label, setup, seed, task, device)
        acc = {d: long_range.accuracy(model, task, d, setup) for d in distances}
        gradient = long_range.gradient_by_distance(model, task, setup, list(range(setup.length - 1)))
        row = {"cell": label, "accuracy": acc, "gradient": gradient, "seconds": r.seconds, "flags": []}
        below = [d for d, a in acc.items() if a < floor]
        if below:
            _flag(
                row,
                f"below chance at d = {', '.join(map(str, below))} (under {floor:.3f}): "
                "degenerate, not a memory effect",
            )
        print(
            f"{label:14} "
            + " ".join(f"{acc[d]:6.2f}" for d in distances)
            + f" {r.seconds:8.1f}"
            + _suffix(row),
            flush=True,
        )
        rows.append(row)
    return {"setup": setup.__dict__, "chance": task.chance, "below_chance_under": floor, "rows": rows}


def _draw_long_range(out: Path, results: dict, caption: str) -> None:
    rows = results["rows"]
    plots.measured_curves(
        {
            row["cell"] + (" (below chance: degenerate)" if row["flags"] else ""): (
                list(row["accuracy"]),
                list(row["accuracy"].values()),
            )
            for row in rows
        },
        out / "long_range_accuracy.png",
        "distance d",
        "accuracy at the blank",
        "Who remembers the name d words back?" + caption,
        hline=(results["chance"], "chance"),
    )
    plots.measured_curves(
        {row["cell"]: (list(row["gradient"]), list(row["gradient"].values())) for row in rows},
        out / "long_range_gradient.png",
        "distance d = t - k",
        "||∂E_t/∂h_(t-d)||",
        "Gradient reaching d steps back (trained models)" + caption,
        log_y=True,
    )


EXPERIMENTS: dict[str, tuple[Callable[[int, str, torch.device], dict], Callable[[Path, dict, str], None]]] = {
    "adding": (_adding, _draw_adding),
    "clipping": (_clipping, _draw_clipping),
    "long-range": (_long_range, _draw_long_range),
    "init": (_init, _draw_init),
}
"""name: (run: seed, scale, device -> results; draw: folder, results, title caption -> :data:`FILES`)."""


def run_experiment(
    name: str,
    out: str | Path | None = None,
    seed: int = 0,
    scale: str = "small",
    device: str = "cpu",
    as_json: bool = False,
) -> dict:
    """Run experiment ``name`` at ``scale`` on ``device``; results.json and plots go to ``out``.

    Before writing, the files any experiment writes are removed from ``out`` (an earlier
    call's), and nothing else. The table goes to stdout, or with ``as_json`` to stderr while
    stdout gets one JSON object: the results (non-finite numbers as null), ``out`` and ``files``.
    Returns the results as written to results.json.
    """
    from rnnkit.training.loop import pick_device

    if name not in EXPERIMENTS:
        raise RnnkitError(f"unknown experiment {name!r}; the experiments are: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise RnnkitError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    target = pick_device(device)
    out = Path(out or f"rnnkit-experiments/{name}-{scale}")
    run, draw = EXPERIMENTS[name]
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        warning = None
        if scale == "tiny":
            warning = TINY_WARNING.format(steps=TINY_STEPS)
            print(warning)
        raw = run(seed, scale, target)
        out.mkdir(parents=True, exist_ok=True)
        removed, others = clear_previous(out, OWNED)
        draw(out, raw, "" if warning is None else f"\n{SMOKE_CAPTION}")
        results = strict_json(
            {
                "experiment": name,
                "seed": seed,
                "scale": scale,
                "device": str(target),
                "warning": warning,
                **raw,
            }
        )
        write_text_atomic(out / RESULTS, json.dumps(results, indent=1, allow_nan=False) + "\n")
        written = [RESULTS, *FILES[name]]
        report_folder(out, written, removed, others, "results and plots")
    if as_json:
        print(json.dumps({**results, "out": str(out.resolve()), "files": written}, allow_nan=False))
    return results
