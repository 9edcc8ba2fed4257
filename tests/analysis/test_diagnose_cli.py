"""rnnkit diagnose from the command line: fresh and trained models, outputs, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from rnnkit.cli.main import main


def test_fresh_sigmoid_elman_shows_the_bound_and_the_vanishing(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["diagnose", "--out", str(out), "--length", "40", "--sequences", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    curve = report["gradient_by_distance"]
    assert curve[30] < 1e-12 * curve[1]  # sigmoid: f' <= 1/4 at every step
    assert set(report["gradient_at"]) == {"1", "5", "10", "20"}  # 50 is beyond 39 steps: left out
    assert report["bound"]["beta_h"] <= 0.25
    products = report["jacobian"]["product_norms_by_distance"]
    assert all(p <= report["bound"]["product"] ** d * (1 + 1e-9) for d, p in enumerate(products))
    assert "gates" not in report and report["jacobian"]["of"] == "h"
    for name in ("gradient_map.png", "gradient_by_distance.png", "jacobian_products.png", "diagnose.json"):
        assert (out / name).stat().st_size > 500


def test_fresh_bidirectional_lstm_backward_direction_has_gates(tmp_path, capsys):
    args = ["diagnose", "--cell", "lstm", "--layers", "2", "--bidirectional", "--direction", "1"]
    args += ["--out", str(tmp_path), "--length", "20", "--sequences", "2", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["jacobian"]["of"] == "(h, c)" and set(report["gates"]) == {"input", "forget", "output"}
    assert "bound" not in report  # the lecture's bound is for the Elman form
    assert (tmp_path / "gate_forget.png").is_file()


def test_trained_run_on_text(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid"):
        (corpus / f"{split}.txt").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20)
    run = tmp_path / "run"
    train = ["train", "--data", str(corpus), "--out", str(run), "--no-progress", "--model.cell=gru"]
    assert main([*train, "--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(run), "--text", "the cat sat on the log", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 6 and report["input"].startswith("the cat sat")  # 7 tokens with <eos>
    assert (run / "diagnose" / "diagnose.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--what", "gates"], "not a diagnostic of ElmanCell; possible: gradients, jacobians, spectrum"),
        (["--length", "2"], "--length must be at least 3"),
        (["--text", "jane said hello"], "unknown: hello"),
        (["--layer", "3"], "--layer must be in [0, 0]"),
        (["--direction", "1"], "needs a bidirectional model"),
        (["--length", "20", "--distances", "1,30"], "distance 30 needs --length 32 or more"),
        (["--distances", "1,x"], "comma-separated integers"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["diagnose", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
