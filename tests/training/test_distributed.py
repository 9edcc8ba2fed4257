"""Data-parallel training: 2 processes on 127.0.0.1 (gloo) equal 1 process with the same global
batch, a killed 2-process run resumes exactly, and bad set-ups end with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from conftest import last_weights, write_toy_lm_corpus, write_toy_treebank

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")

SETTINGS = [
    "--model.cell=lstm",
    "--model.hidden_size=16",
    "--model.embed_size=16",
    "--train.epochs=2",
    "--train.batch_size=4",
    "--train.bptt=6",
    "--train.lr=2",
    "--train.threads=1",
    "--train.dist_timeout=60",
    "--no-progress",
]

# Rank 0 SIGKILLs itself after its n-th checkpoint; torchrun then ends the other rank.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import rnnkit.training.loop as loop
    original, calls = loop.save_checkpoint, {"n": 0}
    def wrapped(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
    loop.save_checkpoint = wrapped
    from rnnkit.cli.main import main
    raise SystemExit(main(["train", *sys.argv[1:]]))
    """
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_lm_corpus(tmp_path_factory.mktemp("corpus"))


def rnnkit(*args, env=None):
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, timeout=300, env=full
    )


def test_two_processes_equal_one_with_the_global_batch(corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert rnnkit("train", "--data", str(corpus), "--out", str(one), *SETTINGS).returncode == 0
    proc = rnnkit("train", "--data", str(corpus), "--out", str(two), "--nproc", "2", *SETTINGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best_valid") == 1  # rank 0 alone reports
    a, b = last_weights(one), last_weights(two)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    figures = [json.loads((run / "summary.json").read_text())["best_valid"]["loss"] for run in (one, two)]
    assert figures[0] == pytest.approx(figures[1], rel=1e-5)


def test_a_killed_two_process_run_resumes_exactly(corpus, tmp_path):
    """With dropout on, so each rank's own random state (and hidden state) must come back."""
    settings = [*SETTINGS, "--model.dropout=0.3", "--train.checkpoint_every=7", "--train.epochs=3"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = rnnkit("train", "--data", str(corpus), "--out", str(whole), "--nproc", "2", *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    port = _free_port()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2"]
    launcher += ["--master-addr=127.0.0.1", f"--master-port={port}", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "KILL_AT": "3"}
    args = ["--data", str(corpus), "--out", str(killed), *settings]
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and not (killed / "summary.json").exists()
    step = json.loads((killed / "last" / "checkpoint.json").read_text())["step"]
    assert 0 < step < json.loads((whole / "last" / "checkpoint.json").read_text())["step"]
    proc = rnnkit("train", "--resume", str(killed), "--nproc", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = last_weights(whole), last_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and another number of processes is refused, on the one process started
    proc = rnnkit("train", "--resume", str(killed), "--no-progress")
    assert proc.returncode == 2 and "trained on 2 process(es)" in proc.stderr


def test_a_tagger_trains_on_two_processes(tmp_path):
    root = write_toy_treebank(tmp_path / "ud", train=80)
    run = tmp_path / "run"
    settings = ["--task=tag", "--model.bidirectional=true", "--model.hidden_size=16", "--model.embed_size=16"]
    settings += ["--train.optimizer=adam", "--train.lr=0.02", "--train.epochs=4", "--train.batch_size=4"]
    settings += ["--train.threads=1", "--train.dist_timeout=60", "--no-progress", "--json"]
    proc = rnnkit("train", "--data", str(root), "--out", str(run), "--nproc", "2", *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["test"]["accuracy"] > 0.9


def test_bad_set_ups_are_one_clear_error(corpus, tmp_path):
    proc = rnnkit(
        "train",
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "a"),
        "--nproc",
        "2",
        "--train.backend=nccl",
        *SETTINGS,
    )
    assert proc.returncode != 0  # a CPU-only torch has no NCCL; one with it refuses NCCL on CPUs
    assert proc.stderr.count("rnnkit train: error: train.backend 'nccl'") == 2  # on every rank
    odd = [s for s in SETTINGS if not s.startswith("--train.batch_size")] + ["--train.batch_size=5"]
    proc = rnnkit("train", "--data", str(corpus), "--out", str(tmp_path / "b"), "--nproc", "2", *odd)
    assert proc.returncode != 0 and "must be a multiple of the 2 processes" in proc.stderr
    cosine = [*SETTINGS, "--train.schedule=cosine"]
    proc = rnnkit("train", "--data", str(corpus), "--out", str(tmp_path / "c"), "--nproc", "2", *cosine)
    assert proc.returncode != 0 and "train.schedule = cosine runs in one process only" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "c" / "last").exists()  # before any step


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
