"""Pictures: a run's learning curve, and the gradient-flow and long-range figures."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnkit.analysis import axes
from rnnkit.fileio import write_bytes_atomic


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only), imported on the first plot:
    commands that draw nothing (score, generate, predict …) start 0.4 s sooner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(
    metrics: str | os.PathLike,
    out: str | os.PathLike,
    title: str = "",
    task: str | None = None,
    level: str | None = None,
) -> None:
    """Plot a run's training figure (every logged step and every epoch's end), its
    validation figure (every epoch, and every ``train.eval_every`` steps as crosses) and
    the learning rate; the checkpoint kept as ``best`` is ringed, and the epochs that
    evaluate averaged weights (NT-ASGD, ``train.average_from``) are shaded.

    Reads ``metrics.jsonl`` as written by :func:`rnnkit.training.loop.fit` and, unless
    ``task`` and ``level`` are given, the run's ``config.json`` beside it, so that the y
    axis is in the unit the run prints (:func:`rnnkit.tasks.lm.describe`): perplexity per
    word or subword (log axis), bits per character or symbol, or for taggers and
    classifiers the loss in nats, under which a second panel shows the figure that
    selects their best checkpoint (entity F1 or accuracy, in percent). The legend sits
    below the axes, where nothing is drawn; values that cannot be drawn (a diverged run's
    infinite loss) are left out and counted in the title.
    """
    plt = _pyplot()
    path = Path(metrics)
    run = _Metrics.read(path, task, level)
    metric = run.selecting_metric()
    fig, axes = plt.subplots(
        2 if metric else 1, 1, figsize=(7, 6.4 if metric else 4.2), dpi=120, sharex=True, squeeze=False
    )
    ax, handles = axes[0][0], []
    if run.train:
        handles += ax.plot(
            [r["step"] for r in run.train],
            run.drawable([r["train_loss"] for r in run.train]),
            ".-",
            lw=1,
            ms=7,
            color="C0",
            label="train (mean of the epoch so far)",
        )
    for label, points, style in (
        ("validation", run.epochs, "o-"),
        ("validation within an epoch", run.checks, "x"),
    ):
        if points:
            handles += ax.plot(
                [r["step"] for r in points],
                run.drawable([r["valid_loss"] for r in points]),
                style,
                color="C1",
                label=label,
            )
    if metric is not None:
        handles += _metric_panel(axes[1][0], run, metric)
    handles += _ring_best(ax if metric is None else axes[1][0], run, metric)
    handles += _averaged_span(ax, run)
    ax.set_ylabel(run.ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if run.log_axis:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis, *ax.get_ylim(), plain=True)
    handles += _learning_rate(ax, run)
    bottom = axes[-1][0]
    bottom.set_xlabel("training step (batch)")
    bottom.set_xlim(left=0)
    bottom.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2 if metric else -0.16),
        ncol=2,
        fontsize=9,
        frameon=False,
    )
    name = title or path.parent.name
    note = f" ({run.skipped} non-finite values not drawn)" if run.skipped else ""
    ax.set_title(f"{name}{note}")
    save(fig, out)


class _Metrics:
    """A run's metrics.jsonl as the learning curve draws it: the records, the unit, and a
    count of the values it could not draw."""

    def __init__(self, rows: list[dict], task: str, level: str) -> None:
        from rnnkit.tasks import task_kind

        self.rows, self.epochs, last_step = rows, [], 0
        for r in rows:  # an epoch sits at its own step, or after the last logged one
            last_step = r.get("step", last_step)
            if "epoch" in r:
                self.epochs.append({**r, "step": last_step})
        self.checks = [r for r in rows if "check" in r]  # train.eval_every: validation within epochs
        # The training figure is the mean over the epoch so far: every log_every steps and at
        # the epoch's end (the only points of a run shorter than log_every steps).
        train = [r for r in rows if "epoch" not in r and "check" not in r and "train_loss" in r]
        self.train = sorted([*train, *(r for r in self.epochs if "train_loss" in r)], key=lambda r: r["step"])
        self.kind = task_kind(task)
        unit = self.kind.count_unit(level)
        self.log_axis = self.kind.perplexity and level not in ("char", "symbol")
        if not self.kind.perplexity:
            self.shown, self.ylabel = float, f"loss (nats per {unit})"
        elif self.log_axis:
            self.shown, self.ylabel = _ppl, f"perplexity per {unit}"
        else:  # PTB-char's convention, as describe() prints it
            self.shown, self.ylabel = (lambda loss: loss / math.log(2)), f"bits per {unit}"
        self.skipped = 0

    @classmethod
    def read(cls, path: Path, task: str | None, level: str | None) -> _Metrics:
        """The records of ``path``; the task and level from the run's config.json beside it
        unless given (a run without one: a language model if it logged perplexities)."""
        from rnnkit.training.rundir import RunDir

        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        config_file = RunDir(path.parent).config
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        if task is None:
            task = config.get("task") or ("lm" if any("valid_ppl" in r for r in rows) else "tag")
        return cls(rows, task, level or config.get("data", {}).get("level", "word"))

    def selecting_metric(self) -> str | None:
        """The validation figure that picks a tagger's or classifier's best checkpoint; None
        for a language model (its validation loss does)."""
        if self.kind.perplexity:
            return None
        return "f1" if any("valid_f1" in r for r in self.epochs) else "accuracy"

    def drawable(self, values: list[float], scale=None) -> list[float]:
        """``values`` in the unit drawn (``scale``, default the loss's unit), with NaN (a gap)
        for those that cannot be drawn, counted in :attr:`skipped`."""
        scale = scale or self.shown
        ys = [scale(v) for v in values]
        bad = [not math.isfinite(y) or (self.log_axis and scale is self.shown and y <= 0) for y in ys]
        self.skipped += sum(bad)
        return [math.nan if b else y for y, b in zip(ys, bad)]


def _percent(value: float) -> float:
    return 100 * value


def _metric_panel(metric_ax, run: _Metrics, metric: str) -> list:
    """The second panel of a tagger or classifier: the validation F1 or accuracy in percent."""
    label = "entity F1" if metric == "f1" else "accuracy"
    for points, style, name in ((run.epochs, "o-", "validation"), (run.checks, "x", "validation within")):
        if points:
            metric_ax.plot(
                [r["step"] for r in points],
                run.drawable([r[f"valid_{metric}"] for r in points], _percent),
                style,
                color="C2",
                label=f"{name} {label}",
            )
    metric_ax.set_ylabel(f"validation {label} (%)")
    bottom, top = metric_ax.get_ylim()  # a percentage: within 0-100, at least a point tall
    bottom, top = max(bottom, 0.0), min(top, 100.0)
    metric_ax.set_ylim(bottom, max(top, min(bottom + 1.0, 100.0)))
    metric_ax.grid(True, alpha=0.3)
    return metric_ax.get_lines()[:1]


def _ring_best(best_ax, run: _Metrics, metric: str | None) -> list:
    """Ring the best checkpoint: the lowest validation loss for a language model, else the
    highest F1/accuracy; a later tie wins, as in fit()."""
    key = "valid_loss" if metric is None else f"valid_{metric}"
    candidates = sorted((r for r in [*run.epochs, *run.checks] if key in r), key=lambda r: r["step"])
    if not candidates:
        return []
    sign = 1 if metric is None else -1
    best = min(reversed(candidates), key=lambda r: sign * r[key])
    return best_ax.plot(
        [best["step"]],
        run.drawable([best[key]], run.shown if metric is None else _percent),
        "o",
        ms=14,
        mfc="none",
        mec="black",
        mew=1.5,
        label=f"best checkpoint (step {best['step']})",
    )


def _averaged_span(ax, run: _Metrics) -> list:
    """Shade the epochs whose validation is of the averaged weights (NT-ASGD once it
    triggered, ``train.average_from``): from the end of the last epoch before them."""
    ends = [r["step"] for r in run.epochs]
    first = next((i for i, r in enumerate(run.epochs) if r.get("averaging")), None)
    if first is None:
        return []
    start = ends[first - 1] if first > 0 else 0
    return [ax.axvspan(start, ends[-1], color="C2", alpha=0.1, lw=0, label="weights averaged from here")]


def _learning_rate(ax, run: _Metrics) -> list:
    """The learning rate as a step function on a twin axis (right, grey)."""
    points = sorted((r["step"], r["lr"]) for r in [*run.rows, *run.epochs] if "lr" in r and "check" not in r)
    if not points:
        return []
    lr = ax.twinx()
    xs, ys = [0, *(s for s, _ in points)], [points[0][1], *(v for _, v in points)]
    handles = lr.step(xs, ys, where="pre", color="gray", alpha=0.6, lw=1.2, label="learning rate")
    lr.set_ylim(0, max(ys) * 1.1 or 1)
    lr.set_ylabel("learning rate", color="gray")
    return handles


def save(fig, out: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically (a crash never leaves half a picture) and close it.

    A figure made with a layout engine (``layout="constrained"``) keeps it; others are
    laid out tight, so no title or label is cut off. The picture is drawn in memory and
    written in one piece, so a full or read-only disk is one :class:`~rnnkit.fileio.WriteError`
    naming ``out`` (the previous picture, if any, unchanged), never matplotlib's traceback."""
    plt = _pyplot()
    try:
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)  # a figure left open holds its memory until the process ends
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
    xtokens: Sequence[str] | None = None,
    extra_styles: dict[str, str] | None = None,
):
    """One line per series ``label: (x, y)``; ``extra`` dashed (bounds; ``extra_styles`` maps
    a label to another line style, ``":"``); an optional reference line.

    Values that cannot be drawn (zeros on a log axis, non-finite ones) are gaps, not data;
    a log axis spans at most :data:`rnnkit.analysis.axes.LOG_RANGE` and is labelled in
    powers of ten (plain numbers when it spans less than two decades). ``xtokens``: the x
    positions are steps of this text, labelled with its tokens; x values that are all whole
    numbers get whole-number ticks. Returns the (closed) figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120, layout="constrained")
    colors = {}
    drawn = []
    for label, (x, y) in series.items():
        y = axes.drawable(y, log_y)
        (line,) = ax.plot(x, y, "o-" if len(x) < 12 else "-", lw=1.5, ms=4, label=label)
        colors[label] = line.get_color()
        drawn.append(y)
    for label, (x, y) in (extra or {}).items():
        y = axes.drawable(y, log_y)
        style = (extra_styles or {}).get(label, "--")
        ax.plot(
            x, y, style, lw=1.5 if style == ":" else 1, color=colors.get(label.split(" ")[0]), label=label
        )
        drawn.append(y)
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls=":", lw=1, label=hline[1])
    if log_y:
        ax.set_yscale("log")
        limits = axes.log_limits(*drawn)
        if limits is not None:
            ax.set_ylim(*limits)
            _log_ticks(ax.yaxis, *limits)
    if xtokens is not None:
        positions, labels = axes.token_ticks(xtokens)
        ax.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    elif all(float(v).is_integer() for x, _ in series.values() for v in x):  # steps, distances
        integer_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(axes.wrap_title(title, 7))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, out)
    return fig


def _log_ticks(axis, bottom: float, top: float, plain: bool = False) -> None:
    """Ticks of a log axis: decades labelled 10^k when it spans two decades or more (``plain``:
    as numbers, 100 and 1000, for perplexities), 1-2-5 or 1-9 times each power of ten labelled
    as plain numbers when it is narrower (0.5, 0.6; never 5×10^-1)."""
    from matplotlib import ticker

    number = ticker.FuncFormatter(lambda v, _: axes.plain_number(v))
    style = axes.log_tick_style(bottom, top)
    if style == "decades":
        axis.set_major_locator(ticker.LogLocator(base=10, numticks=9))
        axis.set_major_formatter(number if plain else ticker.LogFormatterMathtext(base=10))
    else:
        subs = (1.0, 2.0, 5.0) if style == "1-2-5" else tuple(float(k) for k in range(1, 10))
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=12))
        axis.set_major_formatter(number)
    axis.set_minor_formatter(ticker.NullFormatter())


def heatmap(
    matrix,
    out: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str,
    log: bool = True,
    clabel: str | None = None,
    limits: tuple[float, float] | None = None,
    xtokens: Sequence[str] | None = None,
    ytokens: Sequence[str] | None = None,
):
    """A matrix as an image (log10 of it by default), NaN (and on a log scale zeros) left
    blank, with a labelled colour bar.

    ``limits``: a fixed colour scale (gates: (0, 1)); by default the data's, on a log scale
    at most :data:`rnnkit.analysis.axes.LOG_RANGE` deep. ``xtokens``/``ytokens``: the
    columns/rows are steps of this text, labelled with its tokens. Returns the (closed) figure.
    """
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.log10(axes.drawable(matrix.ravel(), log=True)).reshape(matrix.shape) if log else matrix
    if limits is None:
        limits = axes.color_limits(values) if log else None
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120, layout="constrained")
    vmin, vmax = limits if limits is not None else (None, None)
    image = ax.imshow(
        values, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest", vmin=vmin, vmax=vmax
    )
    fig.colorbar(image, ax=ax, label=clabel or ("log10 of the value" if log else "value"))
    if xtokens is not None:
        positions, labels = axes.token_ticks(xtokens)
        ax.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    if ytokens is not None:
        positions, labels = axes.token_ticks(ytokens)
        ax.set_yticks(positions, labels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(axes.wrap_title(title, 5.4))
    save(fig, out)
    return fig


def confusion(labels: list[str], matrix, out: str | os.PathLike, title: str) -> None:
    """A confusion matrix with each gold row as fractions of its count (what a label is
    mistaken for), the counts written in the cells that hold any.

    The counts are 8 pt and the labels 9 pt whatever the number of labels: the figure
    grows with it, each cell wide enough for the longest count.
    """
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k, count_pt, label_pt = len(labels), 8, 9
    digits = len(str(int(counts.max()))) if counts.size else 1
    cell = max(0.4, digits * 0.64 * count_pt / 72 + 0.14)  # inches; a digit is ~0.64 em wide
    label_in = max((len(label) for label in labels), default=1) * 0.62 * label_pt / 72 + 0.6
    fig, ax = plt.subplots(figsize=(cell * k + label_in + 1.6, cell * k + label_in + 0.6), dpi=120)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the gold label's count (row)", fraction=0.04, pad=0.03)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=label_pt)
    ax.set_yticks(range(k), labels, fontsize=label_pt)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(
            j,
            i,
            int(counts[i, j]),
            ha="center",
            va="center",
            fontsize=count_pt,
            color="white" if rows[i, j] > 0.5 else "black",
        )
    ax.set_title(title)
    save(fig, out)


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def integer_ticks(axis) -> None:
    """Major ticks at whole numbers only on ``axis`` (``ax.xaxis``): steps, epochs, T, distances."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def measured_curves_figure(
    series: dict[str, tuple[list[float], list[float | None]]],
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = False,
    hline: tuple[float, str] | None = None,
    integer_x: bool = True,
    lost: str = "not finite (diverged)",
):
    """The figure of :func:`measured_curves`, built but not saved: returns ``(fig, ax)``.

    A value that is not finite (NaN, inf or None) is never drawn as a number: its line has
    a gap there and an ``x`` in the series' colour marks its step at the top of the axes,
    labelled ``lost`` in the legend. On a log axis a value ≤ 0 is marked ``v`` at the bottom.
    """
    from matplotlib.transforms import blended_transform_factory

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if log_y:
        ax.set_yscale("log")
    edge = blended_transform_factory(ax.transData, ax.transAxes)  # x in data, y in axes fractions
    marked = {"lost": False, "zero": False}
    for index, (label, (x, y)) in enumerate(series.items()):
        ys = [math.nan if v is None else float(v) for v in y]
        shown = [v if math.isfinite(v) and (v > 0 or not log_y) else math.nan for v in ys]
        # each series thinner, and with another marker, than the one drawn before it: series
        # that coincide (several cells at 100% accuracy) still all show
        under = min(len(series) - 1 - index, 4)
        style = "os^Dv"[index % 5] + "-" if len(x) < 12 else "-"
        (line,) = ax.plot(x, shown, style, lw=1.5 + 0.4 * under, ms=4 + 1.3 * under, label=label)
        for kind, at, marker, points in (
            ("lost", 0.97, "x", [xi for xi, v in zip(x, ys) if not math.isfinite(v)]),
            ("zero", 0.03, "v", [xi for xi, v in zip(x, ys) if log_y and math.isfinite(v) and v <= 0]),
        ):
            if points:
                ax.plot(
                    points,
                    [at] * len(points),
                    marker,
                    ms=9,
                    mew=2,
                    color=line.get_color(),
                    transform=edge,
                    clip_on=False,
                )
                marked[kind] = True
    if hline is not None:
        ax.axhline(hline[0], color="gray", ls=":", lw=1, label=hline[1])
    if marked["lost"]:  # headroom, so that the marks sit above every drawn value
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * (high / low) ** 0.1 if log_y else high + 0.1 * (high - low))
        ax.plot([], [], "x", ms=9, mew=2, color="gray", label=lost)
    if marked["zero"]:
        ax.plot([], [], "v", ms=9, color="gray", label="0 (below the log axis)")
    if integer_x:
        integer_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig, ax


def measured_curves(
    series: dict[str, tuple[list[float], list[float | None]]],
    out: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str,
    **options,
) -> None:
    """One line per series ``label: (x, y)``, non-finite values marked, not drawn as numbers
    (see :func:`measured_curves_figure` for ``options``); saved as PNG to ``out``."""
    fig, _ = measured_curves_figure(series, xlabel, ylabel, title, **options)
    save(fig, out)
