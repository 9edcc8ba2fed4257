"""What ``rnnkit experiment`` writes and prints tells the truth (issue 16, items 5, 15 and 21).

The trainings are replaced by fakes with known numbers (a diverged run, a below-chance
cell, a zero gradient), so each test takes well under a second; the real runs at tiny
scale are in test_experiments.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.analysis import plots
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.experiments import OWNED, adding, clipping, long_range, run_experiment

RNNKIT = Path(sys.executable).with_name("rnnkit")


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity: JSON has neither."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def fake_clipping(monkeypatch):
    def run(lr, clipped, setup, seed, device="cpu"):
        if clipped:
            return clipping.Result(lr, True, losses=[3.6, 3.5, 3.4, 3.3], norms=[2.0, 40.0, 3.0, 1.5])
        return clipping.Result(
            lr, False, losses=[3.6, 11.0, math.nan], norms=[2.0, 400.0, math.inf], stopped_at=2
        )

    monkeypatch.setattr(clipping, "run", run)


@pytest.fixture
def fake_long_range(monkeypatch):
    def train(label, setup, seed, task=None, device="cpu"):
        return label, long_range.Result(label, {}, {}, 0.01)

    def accuracy(model, task, distance, setup, seed=1234):
        return 0.0 if model == "elman-sigmoid" else 0.5

    def gradient(model, task, setup, distances, seed=4321):
        return {d: (0.0 if d == 3 else 0.5**d) for d in distances}

    monkeypatch.setattr(long_range, "train", train)
    monkeypatch.setattr(long_range, "accuracy", accuracy)
    monkeypatch.setattr(long_range, "gradient_by_distance", gradient)


@pytest.fixture
def fake_adding(monkeypatch):
    def run(label, T, setup, seed, device="cpu"):
        mse = {"irnn": 0.8, "elman-relu": math.nan}.get(label, 0.01)
        return adding.Result(label, T, mse, 0.01, curve=[(0, 1.0), (10, 0.5), (19, mse)])

    monkeypatch.setattr(adding, "run", run)


def test_results_json_is_strict_with_null_for_non_finite(fake_clipping, tmp_path, capsys):
    results = run_experiment("clipping", tmp_path, scale="tiny")
    text = (tmp_path / "results.json").read_text()
    written = strict_loads(text)  # NaN and Infinity were written before: not JSON
    assert written == strict_loads(json.dumps(results))
    diverged = next(r for r in written["rows"] if not r["clipped"])
    assert diverged["final_loss"] is None and diverged["losses"] == [3.6, 11.0, None]
    assert diverged["norms"] == [2.0, 400.0, None] and diverged["max_norm"] == 400.0


def test_tiny_scale_warns_in_output_and_json(fake_clipping, tmp_path, capsys):
    run_experiment("clipping", tmp_path / "tiny", scale="tiny")
    out = capsys.readouterr().out
    warning = [line for line in out.splitlines() if "smoke test" in line]
    assert len(warning) == 1 and "not evidence" in warning[0]
    assert "not evidence" in json.loads((tmp_path / "tiny" / "results.json").read_text())["warning"]
    run_experiment("clipping", tmp_path / "small", scale="small")
    assert "smoke test" not in capsys.readouterr().out
    assert json.loads((tmp_path / "small" / "results.json").read_text())["warning"] is None


def test_below_chance_and_worse_than_baseline_are_flagged(fake_long_range, fake_adding, tmp_path, capsys):
    results = run_experiment("long-range", tmp_path / "lr", scale="tiny")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("elman-sigmoid"))
    assert "! below chance at d = 4, 5, 10, 20" in row
    flags = {r["cell"]: r["flags"] for r in results["rows"]}
    assert flags["elman-sigmoid"] and not flags["lstm"]
    results = run_experiment("init", tmp_path / "init", scale="tiny")
    flags = {r["cell"]: r["flags"] for r in results["rows"]}
    assert flags["irnn"] == ["no better than always predicting 1 (MSE 0.167)"]
    assert flags["elman-relu"] == ["MSE not finite (diverged)"] and flags["elman-tanh"] == []
    assert results["rows"][1]["mse"] is None


def test_an_earlier_calls_files_are_removed_and_nothing_else(fake_clipping, tmp_path, capsys):
    for name in ("adding_mse.png", "results.json", "clipping_norms.png", "notes.txt"):
        (tmp_path / name).write_text("from before")
    (tmp_path / "mine").mkdir()
    run_experiment("clipping", tmp_path, scale="tiny")
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clipping_loss.png",
        "clipping_norms.png",
        "mine",
        "notes.txt",
        "results.json",
    ]
    assert (tmp_path / "notes.txt").read_text() == "from before"
    assert (tmp_path / "clipping_norms.png").read_bytes().startswith(b"\x89PNG")
    assert (
        f"removed an earlier call's adding_mse.png, clipping_norms.png, results.json from {tmp_path}" in out
    )
    assert f"results and plots: {tmp_path} (results.json, clipping_loss.png, clipping_norms.png; " in out
    assert "2 other entries there left untouched" in out
    assert set(OWNED) >= {"results.json", "adding_mse.png", "long_range_gradient.png"}


def _integer_ticks(ax) -> bool:
    low, high = ax.get_xlim()
    return all(float(t).is_integer() for t in ax.get_xticks() if low <= t <= high)


def test_plots_mark_divergence_never_sentinels_and_tick_steps_as_integers(
    fake_clipping, saved_figures, tmp_path, capsys
):
    run_experiment("clipping", tmp_path, scale="tiny")
    saved = dict(saved_figures)
    assert set(saved) == {"clipping_loss.png", "clipping_norms.png"}
    for name, fig in saved.items():
        ax = fig.axes[0]
        assert _integer_ticks(ax), (name, ax.get_xticks())
        drawn = [
            y for line in ax.get_lines() if line.get_transform() == ax.transData for y in line.get_ydata()
        ]
        assert max(y for y in drawn if math.isfinite(y)) <= 400.0  # no 1000 or 1e12 stand-ins
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "not finite: the run diverged and stopped here" in legend
        marks = [line for line in ax.get_lines() if line.get_marker() == "x" and len(line.get_xdata())]
        assert sorted(x for line in marks for x in line.get_xdata()) == [2, 2, 2]  # one per diverged rate
    norms = saved["clipping_norms.png"].axes[0]
    title = norms.get_title()
    assert "before clipping" in title and "applied update is scaled down to norm 1" in title
    assert "clipped runs are cut to" not in title


def test_every_experiment_plot_has_integer_x_ticks(
    fake_long_range, fake_adding, saved_figures, tmp_path, capsys
):
    for name in ("adding", "init", "long-range"):
        run_experiment(name, tmp_path / name, scale="tiny")
    assert {n for n, _ in saved_figures} == {
        "adding_mse.png",
        "init_training.png",
        "long_range_accuracy.png",
        "long_range_gradient.png",
    }
    for name, fig in saved_figures:
        assert _integer_ticks(fig.axes[0]), (name, fig.axes[0].get_xticks())
    gradient = dict(saved_figures)["long_range_gradient.png"].axes[0]
    legend = [t.get_text() for t in gradient.get_legend().get_texts()]
    assert "0 (below the log axis)" in legend  # the zero at d = 3: marked, not drawn at 1e-300


def test_measured_curves_figure_ticks_integers_and_gaps_non_finite():
    fig, ax = plots.measured_curves_figure(
        {"a": (list(range(20)), [1.0] * 19 + [math.inf]), "b": (list(range(20)), [None] + [2.0] * 19)},
        "step",
        "loss",
        "t",
        log_y=True,
    )
    assert _integer_ticks(ax)
    a, b = ax.get_lines()[0], ax.get_lines()[2]
    assert math.isnan(a.get_ydata()[-1]) and math.isnan(b.get_ydata()[0])  # gaps, not stand-ins
    assert ax.get_ylim()[1] < 10  # nothing drawn high up: the mark sits at the top of the axes
    fig.clf()


def test_json_prints_one_object_and_the_table_on_stderr(fake_clipping, tmp_path, capsys):
    results = run_experiment("clipping", tmp_path, scale="tiny", as_json=True)
    captured = capsys.readouterr()
    printed = strict_loads(captured.out)  # one object, nothing else on stdout
    assert printed["out"] == str(tmp_path.resolve()) and printed["files"][0] == "results.json"
    assert {k: v for k, v in printed.items() if k not in ("out", "files")} == strict_loads(
        json.dumps(results)
    )
    assert "smoke test" in captured.err and "final loss" in captured.err


def test_cli_json_and_device(fake_clipping, tmp_path, capsys):
    assert (
        main(
            ["experiment", "clipping", "--scale", "tiny", "--out", str(tmp_path), "--json", "--device", "cpu"]
        )
        == 0
    )
    assert strict_loads(capsys.readouterr().out)["device"] == "cpu"
    assert (
        main(["experiment", "clipping", "--scale", "tiny", "--out", str(tmp_path), "--device", "nope"]) == 2
    )
    err = capsys.readouterr().err
    assert "device 'nope' is not usable here" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(RnnkitError, match="device 'nope'"):
        run_experiment("clipping", tmp_path, scale="tiny", device="nope")


def test_console_script_json_is_one_object_on_stdout(tmp_path):
    """The real console script at tiny scale (init: the fastest, seconds)."""
    done = subprocess.run(
        [str(RNNKIT), "experiment", "init", "--scale", "tiny", "--out", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    printed = strict_loads(done.stdout)
    assert (
        printed["experiment"] == "init"
        and printed["scale"] == "tiny"
        and "not evidence" in printed["warning"]
    )
    assert "smoke test" in done.stderr and "test MSE" in done.stderr
