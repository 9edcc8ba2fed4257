"""``rnnkit export RUN --out DIR`` (issue 19, item 1): a folder that needs nothing else, read by
``rnnkit.load`` and the verbs as a run is, naming no path of the machine that trained it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rnnkit
from conftest import write_toy_lm_corpus

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


def rnnkit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=ENV, timeout=300
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    data = write_toy_lm_corpus(root, vocab=8, length=6, train=60, valid=10)
    proc = rnnkit_cli("train", "--data", str(data), "--out", str(root / "run"), *TINY)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def test_the_folder_loads_on_its_own_and_answers_as_the_run(run, tmp_path):
    out = tmp_path / "elsewhere" / "model"
    proc = rnnkit_cli("export", str(run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    moved = tmp_path / "moved"
    os.rename(out, moved)  # nothing in it points back at the run or the corpus
    lines = ["w1 w2 w3", "w4 w5"]
    assert rnnkit.load(moved).score(lines) == rnnkit.load(run).score(lines)
    for path in moved.rglob("*"):
        if path.is_file() and path.suffix == ".json":
            assert str(run.parent) not in path.read_text(), path  # no path of the training machine
    scored = subprocess.run(
        [sys.executable, "-m", "rnnkit", "score", str(moved), "-"],
        input="w1 w2\n", capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert scored.returncode == 0 and scored.stdout.startswith("1\t"), scored.stderr


def test_an_existing_out_and_broken_weights_are_one_line(run, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    proc = rnnkit_cli("export", str(run), "--out", str(out))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "exists" in proc.stderr
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(run), str(broken)], check=True)
    weights = next((broken / "best").glob("model-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit of one weight: the sha256 in checkpoint.json no longer matches
    weights.write_bytes(bytes(data))
    proc = rnnkit_cli("export", str(broken), "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
