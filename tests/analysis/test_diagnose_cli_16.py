"""Issue 16, items 1, 4, 5, 15 (diagnose): the backward direction, runs of every task with their
validation text by default, a consistent output folder, --device and --json.

The README's own example runs through the real console script; the rest in-process, as the
other diagnose tests do, on tiny runs trained here.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.cli.main import main

RNNKIT = Path(sys.executable).with_name("rnnkit")
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


def test_readme_example_backward_direction_measures_toward_the_future(tmp_path):
    """`rnnkit diagnose --cell lstm --layers 2 --bidirectional --direction 1` printed 0.00e+00 at
    every distance; stdout with --json is JSON and nothing else."""
    args = ["diagnose", "--cell", "lstm", "--layers", "2", "--bidirectional", "--direction", "1"]
    args += ["--out", str(tmp_path), "--length", "24", "--sequences", "2", "--hidden", "8", "--json"]
    args += ["--what", "gradients"]
    done = subprocess.run([str(RNNKIT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout
    at = {int(d): v for d, v in report["gradient_at"].items()}
    assert sorted(at) == [1, 5, 10, 20]
    assert all(0 < v < math.inf for v in at.values()) and at[20] < at[10] < at[5] < at[1]
    assert report["direction_name"] == "backward" and report["distance"].startswith("d = k - t")
    assert report["files"][0] == "diagnose.json" and "gradient_map.png" in report["files"]


def test_backward_direction_of_a_sigmoid_elman_decays_and_says_so(tmp_path, capsys):
    args = ["diagnose", "--bidirectional", "--direction", "1", "--layers", "1", "--hidden", "8"]
    assert (
        main([*args, "--length", "40", "--sequences", "2", "--what", "gradients", "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "gradient flows to later steps k = t + d" in out and "mean ||∂E_t/∂h_(t+d)||" in out
    report = json.loads((tmp_path / "diagnose.json").read_text())
    curve = report["gradient_by_distance"]
    assert all(v is not None and 0 < v < math.inf for v in curve)
    assert curve[30] < 1e-12 * curve[1]  # sigmoid: f' <= 1/4 at every step
    assert report["cell"] == "Elman (sigmoid)"


def test_each_call_replaces_the_previous_calls_files_and_nothing_else(tmp_path, capsys):
    """An LSTM's gate_*.png stayed beside a later Elman's diagnose.json."""
    (tmp_path / "notes.txt").write_text("mine\n")
    common = ["--out", str(tmp_path), "--length", "12", "--sequences", "1", "--hidden", "8"]
    assert main(["diagnose", "--cell", "lstm", *common]) == 0
    assert {p.name for p in tmp_path.glob("gate_*.png")} == {
        "gate_input.png",
        "gate_forget.png",
        "gate_output.png",
    }
    capsys.readouterr()
    assert main(["diagnose", "--cell", "elman", "--what", "gradients", *common]) == 0
    out = capsys.readouterr().out
    assert not list(tmp_path.glob("gate_*.png")) and not (tmp_path / "jacobian_norms.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "diagnose.json",
        "gradient_by_distance.png",
        "gradient_map.png",
        "notes.txt",
    ]
    assert f"wrote into {tmp_path}: diagnose.json, gradient_map.png, gradient_by_distance.png" in out
    assert json.loads((tmp_path / "diagnose.json").read_text())["cell"] == "Elman (sigmoid)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A word LM, a bidirectional tagger and a bidirectional classifier, each one tiny epoch."""
    root = tmp_path_factory.mktemp("runs")
    lm_data = root / "lm-data"
    lm_data.mkdir()
    write_toy_lm_corpus(lm_data, train=40, valid=10)
    treebank = write_toy_treebank(root / "treebank", train=20)
    sst = root / "sst"
    sst.mkdir()
    rng = random.Random(0)
    for split in ("train", "dev", "test"):
        trees = []
        for _ in range(12):
            words = [rng.choice(["the", "movie", "was", "good", "bad"]) for _ in range(rng.randint(3, 8))]
            tree = f"(2 {words[-1]})"
            for w in reversed(words[:-1]):
                tree = f"({rng.choice([0, 4])} (2 {w}) {tree})"
            trees.append(tree)
        (sst / f"{split}.txt").write_text("\n".join(trees) + "\n")
    both = ["--model.bidirectional=true", "--model.num_layers=2"]
    trainings = {
        "lm": ["--data", str(lm_data), "--model.cell=gru"],
        "tag": ["--data", str(treebank), "--task=tag", "--model.cell=lstm", *both],
        "classify": ["--data", str(sst), "--task=classify", "--data.classes=2", "--model.cell=gru", *both],
    }
    for name, args in trainings.items():
        assert main(["train", *args, "--out", str(root / name), *TINY]) == 0
    return root


def test_a_language_model_run_is_diagnosed_on_its_validation_text_by_default(runs, tmp_path, capsys):
    """`rnnkit diagnose RUN` had said "give --text or --file"."""
    capsys.readouterr()
    assert main(["diagnose", str(runs / "lm"), "--length", "12", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    valid = (runs / "lm-data" / "valid.txt").read_text().split("\n")[0].split()
    assert report["input"].split()[:8] == valid  # the first line of valid.txt, then <eos>
    assert report["step_tokens"][:9] == [*valid, "<eos>"] and report["steps"] == 11
    assert "validation split" in report["source"] and report["task"] == "lm"


def test_an_unreachable_corpus_is_a_one_line_error_suggesting_text(runs, tmp_path, capsys):
    run = tmp_path / "moved"
    shutil.copytree(runs / "lm", run)
    (run / "data.json").write_text(json.dumps({"data": str(tmp_path / "gone"), "train": None}))
    assert main(["diagnose", str(run), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "the run's corpus is not reachable" in err and "give --text or --file" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["diagnose", str(run), "--text", "w1 w2 w3 w4", "--out", str(tmp_path / "d")]) == 0


def test_a_tagger_is_diagnosed_through_its_bidirectional_encoder(runs, tmp_path, capsys):
    """`diagnose` of a tagger had said "needs a language model"."""
    capsys.readouterr()
    args = ["diagnose", str(runs / "tag"), "--direction", "1", "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "tag" and "gold tags" in report["source"]
    assert report["step_tokens"] == report["input"].split() and report["steps"] == len(report["step_tokens"])
    curve = [v for v in report["gradient_by_distance"] if v is not None]
    assert len(curve) == report["steps"] and all(0 < v < math.inf for v in curve)
    assert (tmp_path / "gradient_map.png").is_file() and (tmp_path / "gate_forget.png").is_file()
    assert (
        main(["diagnose", str(runs / "tag"), "--text", "the cat sat on the mat", "--out", str(tmp_path)]) == 0
    )
    assert "E_t of the predicted tags" in capsys.readouterr().out


def test_a_classifier_is_diagnosed_from_its_one_loss(runs, tmp_path, capsys):
    capsys.readouterr()
    args = ["diagnose", str(runs / "classify"), "--text", "the movie was good", "--out", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "classify" and report["steps"] == 4
    assert report["step_tokens"] == ["the", "movie", "was", "good"]
    assert all(0 < v < math.inf for v in report["gradient_by_distance"])
    assert "gradient_map.png" not in report["files"]  # one loss: its curve is the whole map
    assert main(["diagnose", str(runs / "classify"), "--out", str(tmp_path)]) == 0  # its dev sentences


@pytest.mark.parametrize("device, ok", [("cpu", True), ("nonsense", False)])
def test_device_is_an_option_checked_like_every_commands(tmp_path, capsys, device, ok):
    args = ["diagnose", "--device", device, "--length", "6", "--sequences", "1", "--hidden", "4"]
    assert main([*args, "--what", "gradients", "--out", str(tmp_path), "--json"]) == (0 if ok else 2)
    captured = capsys.readouterr()
    if ok:
        assert json.loads(captured.out)["device"] == "cpu"
    else:
        assert "device 'nonsense' is not usable here" in captured.err
        assert len(captured.err.strip().splitlines()) == 1
