"""The cells after the lecture through every pipeline (issue 22, item 3): ``[model] cell =
"mingru"`` trains and evaluates a language model, a tagger and a classifier; the stream,
``diagnose`` and the exports work or refuse in one line (minGRU and minLSTM; the LayerNorm
LSTM's stream and diagnose too).

The language model and the tagger train through the real console script, side by side in
two processes; the rest runs in this one.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path

import pytest
import torch

import rnnkit
from conftest import write_toy_lm_corpus, write_toy_sst, write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.data.text import Codec
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.inference import as_read
from rnnkit.models.config import build_model
from rnnkit.stream import Stream

SCRIPT = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin" / "rnnkit"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A minGRU language model and a bidirectional minLSTM tagger (its candidate W x + b, the
    setting ``model.candidate = linear``), trained at once by ``rnnkit train``."""
    root = tmp_path_factory.mktemp("mincells")
    (root / "lm").mkdir()
    lm_data = write_toy_lm_corpus(root / "lm", vocab=8, length=6, train=60, valid=10)
    tag_data = write_toy_treebank(root / "treebank", train=30)
    commands = {
        "lm": ["--data", str(lm_data), "--model.cell=mingru"],
        "tag": [
            "--task=tag",
            "--data",
            str(tag_data),
            "--model.cell=minlstm",
            "--model.bidirectional=true",
            "--model.candidate=linear",
        ],
    }
    procs = {
        task: subprocess.Popen(
            [str(SCRIPT), "train", *args, "--out", str(root / f"{task}-run"), *TINY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for task, args in commands.items()
    }
    for proc in procs.values():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return {task: root / f"{task}-run" for task in commands}


def test_a_mingru_language_model_trains_evaluates_and_scores(runs):
    run = runs["lm"]
    assert json.loads((run / "config.json").read_text())["model"]["cell"] == "mingru"
    proc = subprocess.run(
        [str(SCRIPT), "evaluate", str(run), "--split", "valid"], capture_output=True, text=True, env=ENV
    )
    assert proc.returncode == 0 and "ppl" in proc.stdout, proc.stderr
    trained = rnnkit.load(run)
    assert not any("weight_hh" in name for name, _ in trained.model.named_parameters())
    assert math.isfinite(trained.score(["w1 w2 w3"])[0]["logprob"])


def test_a_bidirectional_minlstm_tagger_trains_evaluates_and_tags(runs):
    command = [str(SCRIPT), "evaluate", str(runs["tag"]), "--split", "test"]
    proc = subprocess.run(command, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0 and "accuracy" in proc.stdout, proc.stderr
    tagger = rnnkit.load(runs["tag"])
    assert len(tagger.tag([["the", "cat", "sat"]])[0]) == 3
    assert {cell.candidate for cell in tagger.model.rnn.cells} == {"linear"}
    assert json.loads((runs["lm"] / "config.json").read_text())["model"]["candidate"] == "g"


def test_a_mingru_classifier_trains(tmp_path, capsys):
    data = write_toy_sst(tmp_path / "sst")
    out = tmp_path / "run"
    args = ["--task=classify", "--data.classes=2", "--model.cell=mingru", "--model.pooling=mean"]
    assert main(["train", "--data", str(data), "--out", str(out), *args, *TINY]) == 0
    assert "accuracy" in capsys.readouterr().out
    probabilities = rnnkit.load(out).classify(["the film good"])
    assert len(probabilities) == 1


def test_diagnose_shows_the_gates_and_no_w_hh_spectrum(runs, tmp_path, capsys):
    out = tmp_path / "diagnose"
    assert main(["diagnose", str(runs["lm"]), "--out", str(out)]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    assert "spectrum" not in report and "update" in json.dumps(report.get("gates", report))
    assert (out / "gate_update.png").exists() and (out / "jacobian_products.png").exists()
    assert main(["diagnose", str(runs["lm"]), "--out", str(out), "--what", "spectrum"]) == 2
    assert "not a diagnostic of MinGRUCell" in capsys.readouterr().err


def test_diagnose_a_fresh_layernorm_lstm_shows_its_gates_and_w_hh(tmp_path):
    out = tmp_path / "diagnose"
    assert main(["diagnose", "--cell", "lnlstm", "--hidden", "6", "--length", "12", "--out", str(out)]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    assert "spectrum" in report and (out / "gate_forget.png").exists()


def test_onnx_export_and_weight_drop_are_refused_in_one_line(runs, tmp_path, capsys):
    target = tmp_path / "model.onnx"
    assert main(["export", str(runs["lm"]), "--format", "onnx", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MinGRUCell has no ONNX export yet" in err, err
    assert not target.exists()
    data = runs["lm"].parent / "lm"
    args = ["--model.cell=minlstm", "--model.weight_drop=0.5", *TINY]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "wd"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MinLSTMCell has none" in err, err


WORDS = [f"w{i}" for i in range(12)]
VOCAB = Vocab([UNK, EOS, *WORDS])
WORD = Codec("word")


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "lnlstm", "slstm"])
def test_a_stream_fed_in_pieces_scores_as_the_whole_text_and_restores(cell):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embed_size=7, hidden_size=7, num_layers=2)
    model = build_model(config, len(VOCAB)).double().eval()
    rng = random.Random(0)
    text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(3)) + "\n"
    tokens, _ = as_read(VOCAB, WORD.corpus_tokens(text))
    ids = torch.tensor([VOCAB.index(EOS)] + [VOCAB.index(t) for t in tokens])
    with torch.no_grad():
        expected = model.log_prob(ids[:-1, None], ids[1:, None])[0][:, 0]
    stream = Stream(model, VOCAB, WORD, window=5)
    cut = len(text) // 2
    first = stream.feed(text[:7]).logprobs + stream.feed(text[7:cut]).logprobs
    blob = stream.snapshot()
    rest = stream.feed(text[cut:]).logprobs
    torch.testing.assert_close(torch.tensor(first + rest, dtype=torch.float64), expected, rtol=0, atol=1e-10)
    again = Stream(model, VOCAB, WORD, window=5)
    again.restore(blob)
    assert again.feed(text[cut:]).logprobs == rest
