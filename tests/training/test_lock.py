"""One trainer per run directory: a second process is refused while the first holds the run;
the lock of a killed run is stale and taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import write_toy_lm_corpus
from rnnkit.training.lock import RunLock, fcntl

pytestmark = pytest.mark.skipif(fcntl is None, reason="no fcntl: runs are not locked here")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("lock"), vocab=8, length=6, train=60, valid=10)
    out = root / "run"
    settings = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    assert rnnkit("train", "--data", str(root), "--out", str(out), *settings).returncode == 0
    return out


def rnnkit(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=env)


def test_a_finished_run_holds_no_lock(run):
    assert not (run / ".lock").exists()  # a clean exit removes it


def test_a_second_trainer_is_refused_while_the_first_holds_the_run(run):
    before = (run / "last" / "checkpoint.json").read_text()
    with RunLock(run):
        proc = rnnkit("train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 2
    assert "another rnnkit train is using this run directory" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (run / "last" / "checkpoint.json").read_text() == before


def test_the_lock_of_a_killed_run_is_stale_and_taken_over(run):
    dead = {"pid": 2**22 + 7, "host": "elsewhere", "since": "2026-11-27 10:00:00"}
    (run / ".lock").write_text(json.dumps(dead) + "\n")  # written, but nobody holds the flock
    proc = rnnkit("train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"a stale lock from pid {dead['pid']}" in proc.stderr
    assert not (run / ".lock").exists()
