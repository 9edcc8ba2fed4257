"""What ``rnnkit demo`` writes and prints tells the truth (issue 16, items 5, 15 and 21).

Training is replaced by fakes with known numbers (one of them not finite), so each test
takes about a second; the real demo's claims are checked in test_demo_claims.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rnnkit.analysis import plots
from rnnkit.cli import demo
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.experiments import long_range


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def real_page():
    """The demo's explorer page as it is (the other tests write its preface alone: faster)."""


@pytest.fixture(autouse=True)
def fake_training(monkeypatch, request):
    labels = {}
    trained.clear()

    def train(label, setup, seed, task=None, device="cpu"):
        # an untrained model of the cell (the demo saves it as a run and shows it in its page)
        model = long_range.make_model(label, setup, len(task.tokens))
        labels[id(model)] = label
        trained[label] = model
        return model, long_range.Result(label, {}, {}, 0.01, curve=[(0, 3.5), (50, 3.0), (99, 2.5)])

    def accuracy(model, task, distance, setup, seed=1234):
        return 1.0 if labels[id(model)] in ("gru", "lstm") else 0.125

    def gradient(model, task, setup, distances, seed=4321):
        label = labels[id(model)]
        rate = 0.2 if label.startswith("elman") else 0.99
        return {d: (math.nan if (label, d) == ("irnn", 20) else rate**d) for d in distances}

    monkeypatch.setattr(long_range, "train", train)
    monkeypatch.setattr(long_range, "accuracy", accuracy)
    monkeypatch.setattr(long_range, "gradient_by_distance", gradient)
    monkeypatch.setattr(demo, "parity_error", lambda: 0.0)
    if "real_page" not in request.fixturenames:

        def preface_only(out, models, setup, task, seed, preface):
            (out / demo.RUNS).mkdir(exist_ok=True)
            (out / "index.html").write_text(preface)

        monkeypatch.setattr(demo, "_explorer_page", preface_only)


trained: dict = {}
"""The models the fake training returned, by cell."""


def test_summary_is_strict_json_with_null_for_non_finite(tmp_path, capsys):
    assert demo.run_demo(out=tmp_path) == 0
    summary = strict_loads((tmp_path / "summary.json").read_text())  # NaN was written before
    assert summary["results"]["irnn"]["gradient"] == {
        "1": 0.99,
        "20": None,
        "50": 0.99**50,
    }
    assert all(c["held"] for c in summary["claims"]) and "warning" not in summary
    assert summary["device"] == "cpu"


def test_an_earlier_calls_files_are_removed_before_writing_and_nothing_else(tmp_path, capsys, monkeypatch):
    for name in (*demo.FILES, "notes.txt"):
        (tmp_path / name).write_text("from before")
    original = plots.measured_curves

    def fail_on_the_second(series, out, *args, **options):
        if Path(out).name == "gradient.png":
            raise OSError("disk full")
        original(series, out, *args, **options)

    monkeypatch.setattr(plots, "measured_curves", fail_on_the_second)
    with pytest.raises(OSError):
        demo.run_demo(out=tmp_path)
    # no summary or page of the earlier call left beside this call's accuracy.png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png", "notes.txt"]
    monkeypatch.setattr(plots, "measured_curves", original)
    (tmp_path / "training.png").write_text("from before")
    assert demo.run_demo(out=tmp_path) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*demo.FILES, "notes.txt"])
    assert (tmp_path / "notes.txt").read_text() == "from before"
    assert f"removed an earlier call's accuracy.png, training.png from {tmp_path}" in out
    assert (
        f"plots, the cells' runs and the explorer's page: {tmp_path} "
        "(index.html, summary.json, accuracy.png, gradient.png, training.png, runs; "
        "1 other entry there left untouched)"
    ) in out


def test_fewer_steps_warn_that_the_numbers_are_not_evidence(tmp_path, capsys):
    demo.run_demo(out=tmp_path, steps=5)
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "not evidence" in line] == [
        "warning: 5 steps per cell (the demo's are 1000): "
        "a smoke test, whose numbers are not evidence of anything"
    ]
    assert "not evidence" in json.loads((tmp_path / "summary.json").read_text())["warning"]
    assert "not evidence" in (tmp_path / "index.html").read_text()


def test_plots_tick_integers_and_mark_non_finite(tmp_path, capsys, saved_figures):
    demo.run_demo(out=tmp_path)
    assert [name for name, _ in saved_figures] == ["accuracy.png", "gradient.png", "training.png"]
    for name, fig in saved_figures:
        ax = fig.axes[0]
        low, high = ax.get_xlim()
        assert all(float(t).is_integer() for t in ax.get_xticks() if low <= t <= high), name
    gradient = dict(saved_figures)["gradient.png"].axes[0]
    assert "not finite (diverged)" in [t.get_text() for t in gradient.get_legend().get_texts()]
    drawn = [
        y
        for line in gradient.get_lines()
        if line.get_transform() == gradient.transData
        for y in line.get_ydata()
    ]
    assert min(y for y in drawn if math.isfinite(y)) > 1e-60  # no 1e-300 stand-ins


def test_json_prints_one_object_and_the_table_on_stderr(tmp_path, capsys):
    assert demo.run_demo(out=tmp_path, steps=5, as_json=True) == 0
    captured = capsys.readouterr()
    printed = strict_loads(captured.out)
    assert printed["out"] == str(tmp_path.resolve()) and printed["files"] == list(demo.FILES)
    written = strict_loads((tmp_path / "summary.json").read_text())
    assert {k: v for k, v in printed.items() if k not in ("out", "files")} == written
    assert "acc d=5" in captured.err and "the lecture's claims" in captured.err


def test_cli_json_and_device(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "5", "--json", "--device", "cpu"]) == 0
    assert strict_loads(capsys.readouterr().out)["setup"]["steps"] == 5
    assert main(["demo", "--out", str(tmp_path), "--device", "nope"]) == 2
    err = capsys.readouterr().err
    assert "device 'nope' is not usable here" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(RnnkitError, match="device 'nope'"):
        demo.run_demo(out=tmp_path, device="nope")


def test_the_page_is_the_explorer_on_the_five_runs_it_saved(tmp_path, capsys, real_page):
    import re

    import rnnkit

    assert demo.run_demo(out=tmp_path, steps=5) == 0
    out = capsys.readouterr().out
    labels = list(long_range.LABELS)
    for label in labels:  # each cell a run directory with the demo's very weights
        loaded = rnnkit.load(tmp_path / "runs" / label).model.state_dict()
        expected = trained[label].state_dict()
        assert loaded.keys() == expected.keys()
        assert all(bool((loaded[k] == expected[k]).all()) for k in expected)
    live = f"rnnkit explore {tmp_path / 'runs' / 'elman-sigmoid'} {tmp_path / 'runs' / 'lstm'}"
    assert f"the live explorer, any text: {live}" in out
    page = (tmp_path / "index.html").read_text()
    assert "<script src=" not in page and '<link rel="stylesheet" href=' not in page  # one file
    assert "The lecture's claims" in page and "gradient.png" in page and "not evidence" in page
    data = re.search(r'<script id="rnnkit-data" type="application/json">(.*?)</script>', page, re.S)
    shot = json.loads(data.group(1))
    # the page opens on the sigmoid Elman network beside the LSTM
    assert [r["name"] for r in shot["runs"]] == ["elman-sigmoid", "lstm", "elman-tanh", "irnn", "gru"]
    assert len(shot["texts"]) == len(demo.PAGE_DISTANCES)
    for n, d in enumerate(demo.PAGE_DISTANCES):
        words = shot["texts"][n].split()
        blank = len(words) - 1
        assert words[blank] == words[blank - d]  # the name, d words before the blank
        for run in range(len(labels)):
            entry = shot["results"][f"{run}|{n}"]
            assert entry["analyze"]["tokens"] == words and len(entry["gradient"]["0/0"]["map"]) == len(words)
            assert (
                f"0/0/h/{blank - d}-{blank - d + 1}" in entry["units"]
                and f"0/0/h/{blank}-{blank + 1}" in entry["units"]
            )
