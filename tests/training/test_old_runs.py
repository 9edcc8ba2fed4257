"""A run directory written by an earlier release still loads and resumes (issue 17, item 6).

``tests/fixtures/lm-run-a9f4bf9`` was made by rnnkit at commit a9f4bf9 (before issues 16
and 17: no ``rnnkit_format`` in its safetensors, the training state assembled by the old
loop) with

    rnnkit train --data corpus --out run --model.hidden_size=8 --model.embed_size=8
        --train.epochs=2 --train.batch_size=4 --train.bptt=5 --train.checkpoint_every=10
        --train.seed=3 --no-progress

on ``write_toy_lm_corpus(corpus, vocab=8, length=6, train=60, valid=10)``, SIGKILLed right
after its third checkpoint save (``last/`` at step 20, ``best/`` at step 21, the end of
epoch 1). Its ``data.json`` named that corpus's path on the machine that made it; the test
writes the same corpus again and points the run at it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from conftest import last_weights, write_toy_lm_corpus

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lm-run-a9f4bf9"
SETTINGS = [
    "--model.hidden_size=8",
    "--model.embed_size=8",
    "--train.epochs=2",
    "--train.batch_size=4",
    "--train.bptt=5",
    "--train.checkpoint_every=10",
    "--train.seed=3",
    "--no-progress",
]


def rnnkit_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=env, timeout=300
    )


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's weights, by name."""
    from safetensors.torch import load_file

    record = json.loads((checkpoint / "checkpoint.json").read_text())
    return dict(sorted(load_file(checkpoint / record["weights"]).items()))


@pytest.fixture
def old_run(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_toy_lm_corpus(corpus, vocab=8, length=6, train=60, valid=10)
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    data = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(json.dumps({**data, "data": str(corpus)}))
    return run, corpus


def test_the_old_run_loads_from_python(old_run):
    run, _ = old_run
    for which in ("best", "last"):
        trained = rnnkit.load(run, which)
        model, vocab, config, codec = trained  # the old 4-tuple still unpacks
        assert config.model.hidden_size == 8 and len(vocab) == 10
        assert model is trained.model and codec is trained.codec
        scored = trained.score(["w1 w2 w3"])[0]
        assert scored["ppl"] > 1 and len(scored["surprisal_bits"]) == 4  # three words and <eos>


def test_the_old_run_resumes_to_what_an_uninterrupted_run_computes(old_run, tmp_path):
    """Killed under the old code, resumed under this one: the same weights, bit for bit, as
    this code training the same settings from the start without a stop."""
    run, corpus = old_run
    resumed = rnnkit_cli("train", "--resume", str(run), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    whole = tmp_path / "whole"
    fresh = rnnkit_cli("train", "--data", str(corpus), "--out", str(whole), *SETTINGS)
    assert fresh.returncode == 0, fresh.stderr
    got, expected = last_weights(run), last_weights(whole)
    assert got.keys() == expected.keys()
    # Bit for bit where this CPU computes as the fixture's machine did: a run of this code to
    # the end of epoch 1 gives the fixture's best/ (step 21) exactly. On another CPU (other
    # vector units, other float rounding in the products) the first 20 steps came out of
    # other arithmetic, and the resumed weights agree to rounding only.
    first = tmp_path / "first"
    epoch1 = [s if s != "--train.epochs=2" else "--train.epochs=1" for s in SETTINGS]
    assert rnnkit_cli("train", "--data", str(corpus), "--out", str(first), *epoch1).returncode == 0
    same_cpu = all(
        torch.equal(a, b)
        for a, b in zip(weights(first / "best").values(), weights(FIXTURE / "best").values())
    )
    tolerance = {"rtol": 0, "atol": 0} if same_cpu else {"rtol": 1e-4, "atol": 1e-6}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], **tolerance, msg=name)
    assert json.loads((run / "summary.json").read_text())["run"]["sessions"] == 2
