"""The lecture's experiments: their tasks are what they claim, and each runs end to end (tiny scale)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.experiments import adding, clipping, run_experiment


def test_adding_batch_is_the_adding_problem():
    x, y = adding.adding_batch(20, 500, torch.Generator().manual_seed(0))
    assert x.shape == (20, 500, 2) and y.shape == (500,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))
    assert torch.equal(markers[:10].sum(0), torch.ones(500))  # one marker in each half
    torch.testing.assert_close((x[..., 0] * markers).sum(0), y)
    _, big_y = adding.adding_batch(4, 200_000, torch.Generator().manual_seed(1))
    assert (1.0 - big_y).pow(2).mean().item() == pytest.approx(adding.BASELINE, rel=0.02)  # Var(U + U')


def test_clipping_counts_exploding_steps_and_divergence():
    r = clipping.Result(lr=1.0, clipped=False, losses=[3.0, 2.5, 2.4], norms=[1.0, 1.2, 50.0, 0.9])
    assert r.exploding == 1 and not r.diverged
    r = clipping.Result(lr=1.0, clipped=False, losses=[3.0, math.nan], norms=[1.0, math.inf], stopped_at=1)
    assert r.exploding == 1 and r.diverged


def test_unclipped_irnn_at_lr_1_diverges_and_clipping_saves_it():
    setup = clipping.Setup(steps=12, rates=(1.0,))
    free, clipped = clipping.run(1.0, False, setup, 0), clipping.run(1.0, True, setup, 0)
    assert free.diverged and free.stopped_at is not None
    assert not clipped.diverged and len(clipped.losses) == 12 and max(clipped.norms) > 10 * min(clipped.norms)


@pytest.mark.parametrize("name", ["adding", "clipping", "long-range", "init"])
def test_each_experiment_runs_at_tiny_scale(name, tmp_path, capsys):
    assert main(["experiment", name, "--scale", "tiny", "--out", str(tmp_path), "--seed", "1"]) == 0
    results = json.loads((tmp_path / "results.json").read_text(), parse_constant=_refuse)  # strict JSON
    assert results["experiment"] == name and results["seed"] == 1 and results["rows"]
    assert "not evidence" in results["warning"]  # tiny is a smoke test, and says so
    assert list(tmp_path.glob("*.png"))
    out = capsys.readouterr().out
    assert "results and plots" in out and "smoke test" in out


def _refuse(constant):
    raise ValueError(f"results.json holds {constant}: not JSON")


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope"], "invalid choice: 'nope' (choose from 'adding', 'clipping', 'long-range', 'init')"),
        (["adding", "--scale", "huge"], "invalid choice: 'huge' (choose from 'tiny', 'small', 'full')"),
    ],
)
def test_bad_requests(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # the parser knows the names and scales
        main(["experiment", *args, "--out", str(tmp_path)])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, scale, message",
    [
        ("nope", "tiny", "unknown experiment 'nope'; the experiments are: adding, clipping"),
        ("adding", "huge", "scale must be one of tiny, small, full, got 'huge'"),
    ],
)
def test_bad_requests_from_python(name, scale, message, tmp_path):
    with pytest.raises(RnnkitError, match=message):
        run_experiment(name, tmp_path, scale=scale)


def test_cells_after_the_lecture_run_in_the_adding_and_long_range_experiments(tmp_path):
    """``--cells`` and ``--lengths`` through the console script: the cells asked for, in that
    order, each trained (a different test MSE per cell), the lengths asked for, both recorded."""
    from conftest import run_rnnkit

    out = tmp_path / "adding"
    proc = run_rnnkit(
        "experiment", "adding", "--scale", "tiny", "--cells", "mingru,slstm,lstm", "--lengths", "12,30",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [(r["cell"], r["T"]) for r in results["rows"]] == [
        (c, T) for T in (12, 30) for c in ("mingru", "slstm", "lstm")
    ]
    assert results["cells"] == ["mingru", "slstm", "lstm"] and results["lengths"] == [12, 30]
    assert len({r["mse"] for r in results["rows"]}) == 6
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    proc = run_rnnkit(
        "experiment", "long-range", "--scale", "tiny", "--cells", "lnlstm,minlstm",
        "--out", str(tmp_path / "lr"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["cell"] for r in rows] == ["lnlstm", "minlstm"] and all(r["gradient"] for r in rows)


@pytest.mark.parametrize(
    "args, words",
    [
        (["adding", "--cells", "lstm,nope"], ["--cells: unknown cell 'nope' for adding", "mingru"]),
        (["clipping", "--cells", "lstm"], ["--cells applies to the adding and long-range experiments"]),
        (["long-range", "--lengths", "200"], ["--lengths applies to the adding experiment"]),
        (["adding", "--lengths", "1,200"], ["--lengths: each length T must be in [2, 2000]"]),
        (["adding", "--lengths", "200,100000"], ["--lengths: each length T must be in [2, 2000]"]),
        (["adding", "--lengths", "-1"], ["--lengths: each length T must be in [2, 2000]"]),
        (["adding", "--lengths", "200,x"], ["argument --lengths", "whole numbers"]),
        (["adding", "--cells", "lstm,,gru"], ["argument --cells", "names separated by commas"]),
    ],
)
def test_bad_cells_and_lengths_are_one_line_errors(args, words, tmp_path):
    from conftest import assert_one_line_error, run_rnnkit

    proc = run_rnnkit("experiment", *args, "--scale", "tiny", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, *words)
    assert not (tmp_path / "x").exists()  # checked before anything ran or was written
