"""``rnnkit demo``: see gradients vanish, on generated data, in under three minutes on a laptop CPU.

Five language models (sigmoid Elman, tanh Elman, IRNN, GRU, LSTM) learn the lecture's
"Jane ... said hi to ___" corpus; the demo prints their accuracy at the blank when the
name is 5, 20 and 50 words back, and the gradient reaching 1, 20 and 50 steps back, then
checks the lecture's claims on its own numbers and writes plots and an HTML page.
"""

from __future__ import annotations

import contextlib
import html
import json
import sys
import time
from pathlib import Path

import torch

import rnnkit
from rnnkit.analysis import plots
from rnnkit.data.synthetic import LongRange
from rnnkit.errors import RnnkitError
from rnnkit.experiments import clear_previous, long_range, report_folder, strict_json
from rnnkit.fileio import WriteError, make_dir, stopped_writing, write_text_atomic

TABLE_DISTANCES = (5, 20, 50)
PLOT_DISTANCES = (4, 5, 10, 15, 20, 30, 40, 50, 60)
GRADIENT_DISTANCES = (1, 20, 50)
FILES = ("index.html", "summary.json", "accuracy.png", "gradient.png", "training.png")
"""Everything the demo writes: a call removes these (an earlier call's) from its folder, nothing else."""


def parity_error() -> float:
    """Largest difference between the fast and the reference path over every cell (float64)."""
    worst = 0.0
    for cell, options in long_range.CELLS.values():
        torch.manual_seed(0)
        m = rnnkit.rnn(cell, 6, 8, num_layers=2, bidirectional=True, dtype=torch.float64, **options)
        x = torch.randn(9, 4, 6, dtype=torch.float64)
        results = []
        for impl in ("reference", "auto"):
            m.impl = impl
            m.zero_grad()
            y, _ = m(x, lengths=[9, 7, 3, 1])
            (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
            results.append([y.detach()] + [p.grad.clone() for p in m.parameters()])
        worst = max(worst, max((a - b).abs().max().item() for a, b in zip(*results)))
    return worst


def claims(results: dict[str, long_range.Result], chance: float) -> list[tuple[str, bool]]:
    """The lecture's claims, each checked on this run's numbers."""
    far = max(TABLE_DISTANCES)
    gated = {k: results[k].accuracy[far] for k in ("gru", "lstm")}
    plain = {k: results[k].accuracy[far] for k in ("elman-sigmoid", "elman-tanh")}

    def ratio(label: str) -> float:
        g = results[label].gradient
        return g[far] / g[1] if g[1] > 0 else 0.0

    sigmoid, lstm = ratio("elman-sigmoid"), ratio("lstm")
    return [
        (
            f"GRU and LSTM remember a name {far} words back: accuracy ≥ 0.9 "
            f"({', '.join(f'{k} {v:.2f}' for k, v in gated.items())})",
            all(v >= 0.9 for v in gated.values()),
        ),
        (
            f"sigmoid and tanh Elman do not: within 0.1 of chance {chance:.3f} at distance {far} "
            f"({', '.join(f'{k} {v:.2f}' for k, v in plain.items())})",
            all(abs(v - chance) <= 0.1 for v in plain.values()),
        ),
        (
            f"the gradient {far} steps back, relative to 1 step back, is orders of magnitude (≥ 100x) "
            f"smaller for the sigmoid Elman ({sigmoid:.1e}) than for the LSTM ({lstm:.1e})",
            sigmoid * 100 <= lstm,
        ),
    ]


def run_demo(
    out: str | Path = "rnnkit-demo",
    seed: int = 0,
    steps: int | None = None,
    device: str = "cpu",
    as_json: bool = False,
) -> int:
    """Train the five cells on ``device``, print the table and the claims, write :data:`FILES` to ``out``.

    With ``as_json`` the table goes to stderr and stdout gets one JSON object: summary.json's
    content with ``out`` and ``files``. Returns the exit status (0).
    """
    from rnnkit.training.loop import pick_device

    start = time.perf_counter()
    setup = long_range.Setup() if steps is None else long_range.Setup(steps=steps)
    if setup.steps < 1:
        raise RnnkitError(f"--steps must be at least 1, got {setup.steps}")
    target = pick_device(device)
    out = Path(out)
    make_dir(out)
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        summary = _run(out, seed, setup, target, start)
    if as_json:
        print(json.dumps({**summary, "out": str(out.resolve()), "files": list(FILES)}, allow_nan=False))
    return 0


def _run(out: Path, seed: int, setup: long_range.Setup, device: torch.device, start: float) -> dict:
    task = LongRange()
    g = torch.Generator().manual_seed(seed)
    example, _, _ = task.batch(torch.tensor([12]), 16, g)
    print(f"rnnkit {rnnkit.__version__} demo, seed {seed}: can a language model carry a word across d steps?")
    print(f'  corpus: "{task.text(example[:, 0])}" (the blank is the name; chance {task.chance:.3f})')
    print(
        f"  each cell: 1 layer of {setup.hidden}, Adam lr {setup.lr}, clipping at {setup.clip}, "
        f"{setup.steps} steps of {setup.batch} sequences of {setup.length} words"
    )
    print(f"  fast path = reference path for every cell (float64, max difference {parity_error():.1e})\n")
    warning = None
    if setup.steps < long_range.Setup().steps:
        warning = (
            f"warning: {setup.steps} steps per cell (the demo's are {long_range.Setup().steps}): "
            "a smoke test, whose numbers are not evidence of anything"
        )
        print(warning)
    header = (
        f"{'cell':14} "
        + " ".join(f"{'acc d=' + str(d):>9}" for d in TABLE_DISTANCES)
        + " "
        + " ".join(f"{'grad d=' + str(d):>10}" for d in GRADIENT_DISTANCES)
        + f" {'train s':>8}"
    )
    print(header)
    results: dict[str, long_range.Result] = {}
    gradient_curves: dict[str, dict[int, float]] = {}
    all_distances = list(range(0, setup.length - 1))
    for label in long_range.CELLS:
        model, result = long_range.train(label, setup, seed, task, device)
        result.accuracy = {d: long_range.accuracy(model, task, d, setup) for d in PLOT_DISTANCES}
        gradient_curves[label] = long_range.gradient_by_distance(model, task, setup, all_distances)
        result.gradient = {d: gradient_curves[label][d] for d in GRADIENT_DISTANCES}
        results[label] = result
        print(
            f"{label:14} "
            + " ".join(f"{result.accuracy[d]:9.2f}" for d in TABLE_DISTANCES)
            + " "
            + " ".join(f"{result.gradient[d]:10.1e}" for d in GRADIENT_DISTANCES)
            + f" {result.seconds:8.1f}",
            flush=True,
        )
    checked = claims(results, task.chance)
    print("\nthe lecture's claims, on these numbers:")
    for text, held in checked:
        print(f"  [{'held' if held else 'did not hold'}] {text}")
    print()
    removed, others = clear_previous(out, FILES)
    seconds = time.perf_counter() - start
    try:
        summary = _write(out, setup, seed, task, results, gradient_curves, checked, seconds, device, warning)
    except WriteError as err:  # a full disk: say which files this call did write
        raise stopped_writing(err, out, FILES, "the demo") from None
    report_folder(out, list(FILES), removed, others, "plots and a summary page")
    print(f"open {(out / 'index.html').resolve()}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return summary


def _write(out, setup, seed, task, results, gradient_curves, checked, seconds, device, warning) -> dict:
    """Draw the plots, write summary.json and index.html; returns the summary (strict JSON)."""
    plots.measured_curves(
        {k: (list(r.accuracy), list(r.accuracy.values())) for k, r in results.items()},
        out / "accuracy.png",
        "distance d (words between the name and the blank)",
        "accuracy at the blank",
        "Who remembers the name d words back?",
        hline=(task.chance, "chance"),
    )
    plots.measured_curves(
        {k: (list(c), list(c.values())) for k, c in gradient_curves.items()},
        out / "gradient.png",
        "distance d = t - k (steps back from the blank)",
        "||∂E_t / ∂h_(t-d)||",
        "How much gradient reaches d steps back (trained models, float64)",
        log_y=True,
    )
    plots.measured_curves(
        {k: ([s for s, _ in r.curve], [v for _, v in r.curve]) for k, r in results.items()},
        out / "training.png",
        "training step",
        "loss at the blank (nats)",
        "Learning to fill the blank",
    )
    summary = strict_json(
        {
            "seed": seed,
            "device": str(device),
            "setup": setup.__dict__,
            "chance": task.chance,
            "results": {
                k: {"accuracy": r.accuracy, "gradient": r.gradient, "train_seconds": r.seconds}
                for k, r in results.items()
            },
            "claims": [{"claim": text, "held": held} for text, held in checked],
            "seconds": seconds,
            **({"warning": warning} if warning else {}),
        }
    )
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(f"<td>{r.accuracy[d]:.2f}</td>" for d in TABLE_DISTANCES)
        + "".join(f"<td>{r.gradient[d]:.1e}</td>" for d in GRADIENT_DISTANCES)
        + f"<td>{r.seconds:.1f}</td></tr>"
        for k, r in results.items()
    )
    claim_items = "".join(
        f"<li><b>{'held' if held else 'did not hold'}</b>: {html.escape(text)}</li>" for text, held in checked
    )
    head = "".join(f"<th>acc d={d}</th>" for d in TABLE_DISTANCES) + "".join(
        f"<th>grad d={d}</th>" for d in GRADIENT_DISTANCES
    )
    caution = f"\n<p><b>{html.escape(warning)}</b></p>" if warning else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rnnkit demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
td,th{{padding:.2em .6em;text-align:right}} img{{max-width:49%}}</style></head><body>
<h1>Vanishing gradients, seen</h1>
<p>Language models of five cells learned the lecture's <i>"Jane ... said hi to ___"</i> corpus:
the word at the blank is the name d words earlier. Chance is {task.chance:.3f}. Seed {seed};
{setup.steps} Adam steps per cell; {seconds:.0f} s in all.</p>{caution}
<table><tr><th>cell</th>{head}<th>train s</th></tr>{rows}</table>
<h2>The lecture's claims, on these numbers</h2><ul>{claim_items}</ul>
<img src="accuracy.png" alt="accuracy by distance"> <img src="gradient.png" alt="gradient by distance">
<img src="training.png" alt="training curves">
<p>The gradient is ||∂E_t/∂h_(t-d)|| at the blank, computed in float64 through autograd: the lecture's
∂h_t/∂h_k = Π ∂h_j/∂h_(j-1), whose norm the sigmoid's f' ≤ 1/4 shrinks at every step.</p>
</body></html>
"""
    write_text_atomic(out / "index.html", page)
    return summary
