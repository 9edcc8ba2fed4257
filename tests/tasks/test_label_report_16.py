"""Issue 16, item 22: ``evaluate --report`` prints F1 in percent like P and R, macro and
weighted averages, the confusion matrix with whole label names, and ``--confusion`` draws
counts at a readable size."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rnnkit.analysis import plots
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.tagging import Tagging
from rnnkit.tasks.tagging_metrics import MAX_WIDTH, format_label_report, label_report

GOLD = [["DT", "NN", "DT"], ["VB"]]
PRED = [["DT", "DT", "VB"], ["VB"]]


def test_macro_and_weighted_averages_by_hand():
    """Per label (DT, NN, VB, JJ): P .5 0 .5 0, R .5 0 1 0, F1 .5 0 2/3 0, support 2 1 1 0."""
    report = label_report(GOLD, PRED, labels=["DT", "NN", "VB", "JJ"])
    assert report["accuracy"] == 0.5 and report["tokens"] == 4
    assert report["macro"] == pytest.approx({"precision": 0.25, "recall": 0.375, "f1": (0.5 + 2 / 3) / 4})
    weighted = {"precision": 1.5 / 4, "recall": 2 / 4, "f1": (2 * 0.5 + 2 / 3) / 4}
    assert report["weighted"] == pytest.approx(weighted)


def test_every_score_is_printed_in_percent():
    lines = format_label_report(label_report(GOLD, PRED)).splitlines()
    assert lines[0].split() == ["label", "precision", "recall", "F1", "support"]
    for line in lines[1:4] + lines[6:8]:  # the labels, then the macro and weighted averages
        assert line.count("%") == 3, line
    assert lines[5].split() == ["accuracy", "50.00%", "4"]
    assert lines[6].split()[:2] == ["macro", "avg"] and lines[7].split()[:2] == ["weighted", "avg"]


def test_the_text_confusion_matrix_keeps_whole_label_names():
    names = ["very negative", "negative", "neutral", "positive", "very positive"]
    rng = random.Random(0)
    gold = [[rng.choice(names)] for _ in range(200)]
    pred = [[rng.choice(names)] for _ in range(200)]
    text = format_label_report(label_report(gold, pred, labels=names))
    matrix = text.split("confusion (rows gold, columns predicted):\n")[1].splitlines()
    for name in names:  # before: "very n", "negati", "very p": cut to 6 characters
        assert f" {name}" in matrix[0]
    assert [line[: len("very negative")].strip() for line in matrix[1:]] == names
    assert [line.split()[-5:] for line in matrix[1:]] == [
        [str(c) if c else "." for c in row] for row in label_report(gold, pred, labels=names)["confusion"]
    ]


def test_a_matrix_too_wide_for_names_numbers_its_columns():
    labels = [f"compound:{k}-very-long-relation-name" for k in range(8)]
    gold = [[labels[k % 8] for k in range(40)]]
    pred = [[labels[(k * 3) % 8] for k in range(40)]]
    text = format_label_report(label_report(gold, pred))
    matrix = text.split("column k is the label numbered k):\n")[1].splitlines()
    assert all(len(line) <= MAX_WIDTH for line in matrix)
    assert matrix[0].split() == [str(k) for k in range(8)]
    for k, line in enumerate(matrix[1:]):
        assert line.split()[:2] == [str(k), sorted(labels)[k]]  # whole names, numbered


def test_describe_gives_f1_in_percent_like_precision_and_recall():
    line = Tagging.describe("valid", {"f1": 0.5, "precision": 0.25, "recall": 1.0, "accuracy": 0.9})
    assert "F1 50.00%" in line and "P 25.00%" in line and "R 100.00%" in line
    line = Classification.describe("test", {"accuracy": 0.5, "loss": 1.0, "sentences": 4})
    assert "accuracy 50.00%" in line


@pytest.mark.parametrize("k", [5, 17, 30])
def test_confusion_png_counts_are_readable_and_fit_their_cells(monkeypatch, k):
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, out: (fig.canvas.draw(), figures.append(fig)))
    labels = [f"TAG{i}" for i in range(k)]
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30000, size=(k, k))
    plots.confusion(labels, counts, "unused.png", "run: test")
    fig = figures[0]
    ax = fig.axes[0]
    texts = [t for t in ax.texts]
    assert len(texts) == int((counts > 0).sum())
    assert min(t.get_fontsize() for t in texts) >= 8
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 8
    cell = ax.get_window_extent().width / k
    widest = max(t.get_window_extent().width for t in texts)
    assert widest < cell, f"a count ({widest:.0f} px) is wider than its cell ({cell:.0f} px)"
    plots._pyplot().close(fig)
