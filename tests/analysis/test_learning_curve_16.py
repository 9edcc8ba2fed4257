"""Issue 16, item 19: learning_curve.png shows every run's training figure, in the run's unit,
with its legend clear of the data, plain tick labels, and the figure that selects a tagger's
or classifier's best checkpoint."""

from __future__ import annotations

import json
import math

import pytest

from rnnkit.analysis import plots


@pytest.fixture
def drawn(monkeypatch):
    """Call learning_curve and keep its figure (drawn, not written) instead of saving it."""
    figures = []

    def keep(fig, out):
        fig.canvas.draw()
        figures.append(fig)

    monkeypatch.setattr(plots, "save", keep)

    def draw(run, **kw):
        plots.learning_curve(run / "metrics.jsonl", run / "learning_curve.png", **kw)
        return figures[-1]

    yield draw
    plots._pyplot().close("all")


def write_run(root, rows, task="lm", level="word"):
    root.mkdir()
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "config.json").write_text(json.dumps({"task": task, "data": {"level": level}}))
    return root


def lm_rows(losses=(6.4, 6.0, 5.8), step_every=64):
    """Epoch records of a language model (and one log_every record, as fit writes them)."""
    rows = []
    for e, loss in enumerate(losses, 1):
        if e == 2:
            rows.append({"step": 100, "train_loss": loss + 0.5, "lr": 20.0, "grad_norm": 0.1})
        rows.append(
            {
                "epoch": e,
                "step": e * step_every,
                "lr": 20.0 / e,
                "train_loss": loss + 0.4,
                "train_ppl": math.exp(loss + 0.4),
                "valid_loss": loss,
                "valid_ppl": math.exp(loss),
                "valid_bits": loss / math.log(2),
                "valid_tokens": 100,
            }
        )
    return rows


def series(fig, label_start):
    lines = [line for ax in fig.axes for line in ax.get_lines() if line.get_label().startswith(label_start)]
    assert lines, (
        f"no line labelled {label_start!r}: {[ln.get_label() for a in fig.axes for ln in a.get_lines()]}"
    )
    return lines[0]


def test_the_training_series_is_visible_in_a_run_shorter_than_log_every(tmp_path, drawn):
    """One log_every record (step 100) in three epochs: before, a line of one point, no marker."""
    fig = drawn(write_run(tmp_path / "run", lm_rows()))
    train = series(fig, "train")
    assert train.get_marker() not in (None, "", "None", " ")
    assert list(train.get_xdata()) == [64, 100, 128, 192]  # every epoch's end, and the logged step


def test_the_legend_is_clear_of_the_data_and_the_learning_rate(tmp_path, drawn):
    fig = drawn(write_run(tmp_path / "run", lm_rows()))
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    box = legends[0].get_window_extent()
    for ax in fig.axes:  # the panels and the learning rate's twin axis
        assert not box.overlaps(ax.get_window_extent()), "the legend is drawn over the data"
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert "learning rate" in labels and any(t.startswith("best checkpoint") for t in labels)


@pytest.mark.parametrize("losses", [(6.4, 6.0, 5.8), (8.5, 6.5, 5.0)])  # ppl 330-900; 150-7000
def test_a_log_axis_has_plain_tick_labels(tmp_path, drawn, losses):
    fig = drawn(write_run(tmp_path / "run", lm_rows(losses)))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    texts = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
    assert len(texts) >= 3
    for text in texts:
        assert "times" not in text and "^" not in text and "×" not in text, texts
        float(text)  # a plain number
    assert ax.get_ylabel() == "perplexity per word"


def test_a_character_model_is_drawn_in_bits_per_character(tmp_path, drawn):
    rows = lm_rows((2.7, 2.5, 2.4))
    fig = drawn(write_run(tmp_path / "run", rows, level="char"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "bits per character" and ax.get_yscale() == "linear"
    valid = series(fig, "validation")
    expected = [r["valid_loss"] / math.log(2) for r in rows if "epoch" in r]
    assert list(valid.get_ydata()) == pytest.approx(expected)


def test_the_unit_can_be_given_without_a_config(tmp_path, drawn):
    run = write_run(tmp_path / "run", lm_rows((2.7, 2.5, 2.4)))
    (run / "config.json").unlink()
    assert drawn(run, level="symbol").axes[0].get_ylabel() == "bits per symbol"
    assert drawn(run).axes[0].get_ylabel() == "perplexity per word"  # no config: a word model


def tagger_rows(metric, values, checks=()):
    rows = [
        {
            "epoch": e,
            "step": 20 * e,
            "lr": 0.5,
            "train_loss": 2.0 - 0.1 * e,
            "valid_loss": 1.9 - 0.1 * e,
            f"valid_{metric}": v,
            "valid_accuracy": v,
            "valid_tokens": 50,
        }
        for e, v in enumerate(values, 1)
    ]
    for step, v in checks:
        rows.append({"check": 1, "step": step, "valid_loss": 1.5, f"valid_{metric}": v, "valid_accuracy": v})
    return sorted(rows, key=lambda r: r["step"])


@pytest.mark.parametrize("task", ["tag", "classify"])
def test_taggers_and_classifiers_plot_the_accuracy_that_selects_the_model(tmp_path, drawn, task):
    fig = drawn(write_run(tmp_path / "run", tagger_rows("accuracy", [0.2, 0.6, 0.5]), task=task))
    panels = [ax for ax in fig.axes if ax.get_ylabel().startswith("validation")]
    assert len(panels) == 1 and panels[0].get_ylabel() == "validation accuracy (%)"
    figure = series(fig, "validation accuracy")
    assert list(figure.get_ydata()) == pytest.approx([20, 60, 50])
    best = series(fig, "best checkpoint")
    assert list(best.get_xdata()) == [40] and list(best.get_ydata()) == pytest.approx([60])
    per = "sentence" if task == "classify" else "word"
    assert fig.axes[0].get_ylabel() == f"loss (nats per {per})"


def test_an_entity_tagger_plots_f1_and_a_later_tie_within_an_epoch_is_best(tmp_path, drawn):
    rows = tagger_rows("f1", [0.3, 0.7], checks=[(30, 0.7)])
    fig = drawn(write_run(tmp_path / "run", rows, task="tag"))
    assert series(fig, "validation entity F1")
    best = series(fig, "best checkpoint")
    assert list(best.get_xdata()) == [40]  # the tie at step 30 is superseded, as fit() keeps the later


def test_values_that_cannot_be_drawn_are_counted_in_the_title(tmp_path, drawn):
    rows = lm_rows((6.0, 5.8, 5.7))
    rows[0]["train_loss"] = math.inf
    fig = drawn(write_run(tmp_path / "run", rows))
    assert "1 non-finite values not drawn" in fig.axes[0].get_title()


def test_the_png_is_written(tmp_path):
    run = write_run(tmp_path / "run", tagger_rows("accuracy", [0.2, 0.6]), task="tag")
    plots.learning_curve(run / "metrics.jsonl", run / "learning_curve.png")
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags, start", [((False, True, True), 64), ((True, True, True), 0), (None, None)])
def test_the_epochs_of_averaged_weights_are_shaded(tmp_path, drawn, flags, start):
    """From the end of the last epoch before averaging to the end (train.average_from = 2;
    = 1); nothing shaded in a run that never averaged."""
    rows = lm_rows()
    for r in (r for r in rows if "epoch" in r):
        if flags is not None:
            r["averaging"] = flags[r["epoch"] - 1]
    fig = drawn(write_run(tmp_path / "run", rows))
    spans = [p for p in fig.axes[0].patches if p.get_label() == "weights averaged from here"]
    if flags is None:
        assert not spans
        return
    (span,) = spans
    assert (span.get_x(), span.get_x() + span.get_width()) == (start, 192)
    legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
    assert "weights averaged from here" in [t.get_text() for t in legend.get_texts()]
