"""``--quantize int8`` on score, next, generate and predict (issue 19, item 3): rnnkit's own CPU
inference with torch's dynamically quantized model, through the real console script.

Each verb must read the int8 model wherever it reads a model: its figures differ from the
float32 ones (int8 rounding), by little. The tolerance is measured with a margin: the int8
log-probabilities of these tiny models differ from float32 by about 0.0005 nats a token
(``tests/export/test_int8_19.py`` measures the same on a larger one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import rnnkit
from conftest import assert_one_line_error, train_tiny_runs
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.export import quantize
from rnnkit.export.quantize import Int8Recurrence, quantize_run

RNNKIT = Path(sys.executable).with_name("rnnkit")
TINY = ["--model.hidden_size=16", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]
PER_TOKEN = 0.01
"""Largest mean gap, int8 vs float32, of a token's log-probability (or a class's probability) allowed."""
LINES = ["w1 w2 w3", "w4 w5 w0 w7 w11 w3", "w9", "w2 w2 w8 w10"]


def rnnkit_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The ``rnnkit`` console script on one thread, its output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(RNNKIT), *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny LSTM language model, LSTM tagger and GRU classifier (trained in this process)."""
    root = tmp_path_factory.mktemp("runs")
    train_tiny_runs(root, TINY, classify=["--model.cell=gru"])
    (root / "lines.txt").write_text("\n".join(LINES) + "\n")
    (root / "sentences.txt").write_text("the cat sat on the mat .\nthe dog ran .\ncat dog mat\n")
    (root / "reviews.txt").write_text("the film good\nthe film awful\nthe film great\n")
    return root


def test_score_in_int8_differs_from_float32_by_rounding_only(runs):
    proc = rnnkit_cli("score", str(runs / "lm-run"), str(runs / "lines.txt"), "--json", "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    rounded = [json.loads(line) for line in proc.stdout.splitlines()]
    exact = rnnkit.load(runs / "lm-run").score(LINES)
    assert len(rounded) == len(exact) == len(LINES)
    for a, b in zip(exact, rounded):
        assert a["tokens"] == b["tokens"] and a["logprob"] != b["logprob"]
        assert abs(a["logprob"] - b["logprob"]) < PER_TOKEN * len(a["tokens"])


def test_next_in_int8_gives_nearly_the_float32_distribution(runs):
    args = ("next", str(runs / "lm-run"), "w1 w2 w3", "-k", "12", "--json")
    proc = rnnkit_cli(*args, "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    rounded = {row["token"]: row["p"] for row in json.loads(proc.stdout)}
    exact = dict(rnnkit.load(runs / "lm-run").next("w1 w2 w3", k=12))
    assert rounded.keys() == exact.keys() and rounded != exact
    assert max(abs(rounded[t] - exact[t]) for t in exact) < PER_TOKEN


def test_predict_in_int8_classifies_with_nearly_the_float32_probabilities(runs):
    reviews = str(runs / "reviews.txt")
    proc = rnnkit_cli("predict", str(runs / "classify-run"), reviews, "--json", "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    rounded = [json.loads(line)["probs"] for line in proc.stdout.splitlines()]
    lines = (runs / "reviews.txt").read_text().splitlines()
    exact = [r["probs"] for r in rnnkit.load(runs / "classify-run").classify(lines)]
    assert len(rounded) == len(exact) == 3 and rounded != exact
    assert max(abs(p - q) for a, b in zip(exact, rounded) for p, q in zip(a, b)) < PER_TOKEN


@pytest.fixture
def models_called(monkeypatch):
    """Which models a verb ran, by kind: every model :func:`quantize_run` makes int8 reports
    ``"int8"`` when called, and the float32 model it came from ``"float32"``."""
    called: list[str] = []
    real = quantize.quantize_model

    def spied(model: torch.nn.Module) -> torch.nn.Module:
        int8 = real(model)
        model.register_forward_pre_hook(lambda *_: called.append("float32"))
        int8.register_forward_pre_hook(lambda *_: called.append("int8"))
        return int8

    monkeypatch.setattr(quantize, "quantize_model", spied)
    return called


@pytest.mark.parametrize(
    ("run", "verb"),
    [
        ("lm-run", ["score", "{run}", "{root}/lines.txt"]),
        ("lm-run", ["score", "{run}", "{root}/lines.txt", "--batch-size", "1"]),
        ("lm-run", ["next", "{run}", "w1 w2"]),
        ("lm-run", ["generate", "{run}", "--prompt", "w1", "--num", "2", "--max-tokens", "5"]),
        ("tag-run", ["predict", "{run}", "{root}/sentences.txt"]),
        ("classify-run", ["predict", "{run}", "{root}/reviews.txt"]),
    ],
    ids=["score", "score-batch-1", "next", "generate", "predict-tag", "predict-classify"],
)
def test_every_verb_reads_only_the_int8_model(runs, run, verb, models_called, capsys):
    argv = [word.format(run=runs / run, root=runs) for word in verb]
    assert main([*argv, "--quantize", "int8"]) == 0
    capsys.readouterr()
    assert "int8" in models_called and "float32" not in models_called


@pytest.mark.parametrize(
    "verb",
    [
        ["score", "RUN", "lines.txt"],
        ["next", "RUN", "w1"],
        ["generate", "RUN"],
        ["predict", "RUN", "sentences.txt"],
    ],
    ids=lambda verb: verb[0],
)
def test_quantize_on_a_gpu_is_a_one_line_usage_error(verb):
    """Refused as the command line is read, before a run is looked for (or torch imported)."""
    device = "cuda:1" if verb[0] == "next" else "cuda"
    proc = rnnkit_cli(*verb, "--quantize", "int8", "--device", device)
    assert_one_line_error(proc, f"rnnkit {verb[0]}: error: --quantize int8 runs on the CPU", device)


def test_quantize_is_refused_where_it_means_nothing():
    assert_one_line_error(rnnkit_cli("evaluate", "RUN", "--quantize", "int8"), "unrecognized", "--quantize")
    assert_one_line_error(rnnkit_cli("score", "RUN", "-", "--quantize", "int4"), "--quantize", "int8")


def test_quantize_run_swaps_the_model_its_methods_read(runs):
    trained = rnnkit.load(runs / "tag-run")
    assert quantize_run(trained, None) is trained and not isinstance(trained.model.rnn, Int8Recurrence)
    assert quantize_run(trained) is trained
    assert trained.model is trained.task.model and isinstance(trained.model.rnn, Int8Recurrence)
    with pytest.raises(RnnkitError, match="quantize must be one of int8"):
        quantize_run(trained, "int4")
    with pytest.raises(RnnkitError, match="int8 inference runs on the CPU"):
        quantize_run(types.SimpleNamespace(device=torch.device("cuda")))  # type: ignore[arg-type]
