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
RUNS = "runs"
FILES = ("index.html", "summary.json", "accuracy.png", "gradient.png", "training.png", RUNS)
"""Everything the demo writes: a call removes these files (an earlier call's) from its folder,
nothing else; ``runs/`` holds a run directory per cell (``rnnkit explore`` reads them), written
over an earlier call's."""
PAGE_FIRST = ("elman-sigmoid", "lstm")
"""The runs the explorer's page shows side by side when it opens."""
PAGE_DISTANCES = (5, 50)
"""The explorer's page shows the five cells on a sequence with the name this many words back."""


def parity_error() -> float:
    """Largest difference between the fast and the reference path over every cell (float64)."""
    worst = 0.0
    for cell, options in (long_range.CELLS[label] for label in long_range.LABELS):
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
    models = {}
    gradient_curves: dict[str, dict[int, float]] = {}
    all_distances = list(range(0, setup.length - 1))
    for label in long_range.LABELS:
        model, result = long_range.train(label, setup, seed, task, device)
        result.accuracy = {d: long_range.accuracy(model, task, d, setup) for d in PLOT_DISTANCES}
        gradient_curves[label] = long_range.gradient_by_distance(model, task, setup, all_distances)
        result.gradient = {d: gradient_curves[label][d] for d in GRADIENT_DISTANCES}
        results[label], models[label] = result, model
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
        preface = _preface(setup, seed, task, results, checked, seconds, warning)
        _explorer_page(out, models, setup, task, seed, preface)
    except WriteError as err:  # a full disk: say which files this call did write
        raise stopped_writing(err, out, FILES, "the demo") from None
    report_folder(out, list(FILES), removed, others, "plots, the cells' runs and the explorer's page")
    print(f"open {(out / 'index.html').resolve()} (the explorer on two sequences, no server needed)")
    live = " ".join(str(out / RUNS / label) for label in PAGE_FIRST)
    print(f"the live explorer, any text: rnnkit explore {live}")
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
    return summary


def _preface(setup, seed, task, results, checked, seconds, warning) -> str:
    """The demo's table, claims and plots: the top of its page, above the explorer."""
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
    return f"""<section id="demo-section">
<style>#demo-section td,#demo-section th{{padding:.2em .6em;text-align:right}}
#demo-section img{{max-width:32%}}</style>
<h2>rnnkit demo: vanishing gradients, seen</h2>
<p>Language models of five cells learned the lecture's <i>"Jane ... said hi to ___"</i> corpus:
the word at the blank is the name d words earlier. Chance is {task.chance:.3f}. Seed {seed};
{setup.steps} Adam steps per cell; {seconds:.0f} s in all.</p>{caution}
<table><tr><th>cell</th>{head}<th>train s</th></tr>{rows}</table>
<h3>The lecture's claims, on these numbers</h3><ul>{claim_items}</ul>
<img src="accuracy.png" alt="accuracy by distance"> <img src="gradient.png" alt="gradient by distance">
<img src="training.png" alt="training curves">
<p>The gradient is ||∂E_t/∂h_(t-d)|| at the blank, computed in float64 through autograd: the lecture's
∂h_t/∂h_k = Π ∂h_j/∂h_(j-1), whose norm the sigmoid's f' ≤ 1/4 shrinks at every step.</p>
<p>Below, the five trained cells in the explorer, on two of the corpus's sequences (the name
{" and ".join(str(d) for d in PAGE_DISTANCES)} words before the blank): pick two runs to see them
side by side. This page is a snapshot of those two texts (no server); for any text run
<code>rnnkit explore {" ".join(f"{RUNS}/{label}" for label in PAGE_FIRST)}</code> in this folder.</p>
</section>
"""


def _explorer_page(
    out: Path, models: dict, setup: long_range.Setup, task: LongRange, seed: int, preface: str
) -> None:
    """Save each cell's model as a run under ``out/runs/`` and write index.html: ``preface``
    above the explorer's page with a snapshot of the five runs on the sequences of
    :data:`PAGE_DISTANCES` (units for the name and the blank)."""
    from rnnkit import explore

    # the page opens on its first two runs side by side: the sigmoid Elman network and the LSTM,
    # the lecture's argument in one picture
    order = sorted(
        models, key=lambda label: PAGE_FIRST.index(label) if label in PAGE_FIRST else len(PAGE_FIRST)
    )
    runs = [_save_run(out / RUNS / label, label, models[label], setup, task) for label in order]
    g = torch.Generator().manual_seed(seed + 77)
    texts, spans = [], []
    for d in PAGE_DISTANCES:
        tokens, blank, _ = task.batch(torch.tensor([min(d, setup.length - 1)]), setup.length, g)
        at = int(blank[0])
        texts.append(task.text(tokens[:, 0]))
        spans.append([(at - min(d, at), at - min(d, at) + 1), (at, at + 1)])  # the name, the blank
    page = explore.static_page(explore.snapshot(runs, texts, spans=spans), preface)
    write_text_atomic(out / "index.html", page)


def _save_run(
    path: Path, label: str, model: torch.nn.Module, setup: long_range.Setup, task: LongRange
) -> Path:
    """``model`` (one cell's, as :func:`rnnkit.experiments.long_range.make_model` builds it) as a run
    directory that :func:`rnnkit.load` and ``rnnkit explore`` read: its config, vocabulary and
    ``best`` checkpoint (no training log: the demo trains outside ``rnnkit train``)."""
    from rnnkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from rnnkit.data.vocab import Vocab
    from rnnkit.training.checkpoint import save_checkpoint
    from rnnkit.training.run import write_config
    from rnnkit.training.rundir import RunDir

    cell, options = long_range.CELLS[label]
    model_config = ModelConfig(
        cell=cell, embed_size=setup.embed, hidden_size=setup.hidden, num_layers=1, **options
    )
    train = TrainConfig(optimizer="adam", lr=setup.lr, clip_norm=setup.clip)
    make_dir(path)
    files = RunDir(path)
    write_config(path, RunConfig(task="lm", model=model_config, data=DataConfig(level="word"), train=train))
    Vocab(task.tokens, unk=None).save(files.vocab)
    save_checkpoint(files.best, model, {"step": setup.steps, "source": "rnnkit demo"}, setup.steps)
    return path
