"""A long first epoch killed midway (issue 23): a timed save of ``last/`` to evaluate and resume
from, ``--resume`` that never writes over a killed run's log, and time in every log line.

Before: with the defaults a run killed in its first epoch had no checkpoint at all (``rnnkit
evaluate`` said ``best: no checkpoint here``), ``--resume`` then emptied its ``metrics.jsonl``,
and no log line said when it was written.
"""

from __future__ import annotations

import calendar
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import CLI_ENV, last_weights, run_rnnkit, write_toy_lm_corpus

TINY = [
    "--model.hidden_size=4",
    "--model.embed_size=4",
    "--no-progress",
    "--train.bptt=4",
    "--train.batch_size=2",
]
EVERY_STEP = ["--train.checkpoint_minutes=1e-9", "--train.log_every=1"]  # due at every look


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_lm_corpus(tmp_path_factory.mktemp("corpus"), vocab=8, length=6, train=60, valid=8)


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """An epoch of some 40,000 steps: far longer than any test waits."""
    return write_toy_lm_corpus(tmp_path_factory.mktemp("long"), vocab=8, length=40, train=8000, valid=8)


def rows(run) -> list[dict]:
    """The log's complete lines (one being written is left for the next look)."""
    text = (run / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def killed_when(run, *args: str, ready) -> str:
    """Start ``rnnkit train ARGS``, kill it (SIGKILL) once ``ready(run)`` holds; its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train", *args], env=CLI_ENV, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while not ready(run):
            assert proc.poll() is None, f"training ended before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the condition never held"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with proc.stderr:
        return proc.stderr.read()


def logged(lines: int):
    """A run whose metrics.jsonl has at least ``lines`` complete lines."""

    def ready(run) -> bool:
        path = run / "metrics.jsonl"
        return path.exists() and path.read_bytes().count(b"\n") >= lines

    return ready


def test_timed_saves_change_nothing_that_is_computed(corpus, tmp_path):
    runs = {}
    for name, extra in (("timed", EVERY_STEP), ("untimed", ["--train.checkpoint_minutes=0"])):
        runs[name] = tmp_path / name
        proc = run_rnnkit(
            "train", "--data", str(corpus), "--out", str(runs[name]), *TINY, "--train.epochs=2", *extra
        )
        assert proc.returncode == 0, proc.stderr
    a, b = last_weights(runs["timed"]), last_weights(runs["untimed"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((runs["timed"] / "last" / "checkpoint.json").read_text())
    assert record["step"] == rows(runs["timed"])[-1]["step"]


def test_a_first_epoch_killed_midway_evaluates_from_its_timed_save_and_resumes(long_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(long_corpus), "--out", str(run), *TINY, "--train.epochs=1", *EVERY_STEP]
    killed_when(run, *args, ready=lambda r: (r / "last" / "checkpoint.json").exists())
    assert not (run / "best" / "checkpoint.json").exists()  # no validation finished
    proc = run_rnnkit("evaluate", str(run), "--split", "valid")
    assert proc.returncode == 0, proc.stderr
    assert "has no best checkpoint yet" in proc.stderr and "using last/" in proc.stderr
    assert "ppl" in proc.stdout
    step = json.loads((run / "last" / "checkpoint.json").read_text())["step"]
    # it goes on from the save: the log's steps continue after it
    killed_when(run, "--resume", str(run), ready=lambda r: any(x.get("step", 0) > step + 2 for x in rows(r)))
    steps = [r["step"] for r in rows(run) if "train_loss" in r]
    assert steps == sorted(set(steps)), "a step logged twice or out of order across the kill"


def test_resume_without_a_checkpoint_keeps_the_killed_runs_log(long_corpus, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(long_corpus), "--out", str(run), *TINY, "--train.epochs=1", "--train.log_every=1"]
    killed_when(run, *args, "--train.checkpoint_minutes=0", ready=logged(3))
    assert not (run / "last" / "checkpoint.json").exists()
    before = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl.1").write_text("an older log\n")  # the next free number is taken
    stderr = killed_when(
        run, "--resume", str(run), ready=lambda r: (r / "metrics.jsonl.2").exists() and logged(1)(r)
    )
    assert (
        "no checkpoint yet; training from the beginning (the killed run's log is kept as metrics.jsonl.2)"
        in stderr
    )
    assert (run / "metrics.jsonl.2").read_bytes() == before
    assert (run / "metrics.jsonl.1").read_text() == "an older log\n"
    assert rows(run)[0]["step"] == 1  # the new log starts afresh


def test_every_log_line_says_when_it_was_written(corpus, tmp_path):
    run = tmp_path / "run"
    start = time.time()
    proc = run_rnnkit(
        "train", "--data", str(corpus), "--out", str(run), *TINY, "--train.epochs=2", "--train.log_every=1"
    )
    assert proc.returncode == 0, proc.stderr
    lines = rows(run)
    assert lines
    for row in lines:
        written = calendar.timegm(time.strptime(row["time"], "%Y-%m-%dT%H:%M:%SZ"))
        assert start - 1 <= written <= time.time() + 1
    elapsed = [row["elapsed_s"] for row in lines]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    summary = json.loads((run / "summary.json").read_text())
    assert elapsed[-1] <= summary["run"]["seconds"] + 1e-3


def test_sigterm_saves_the_step_reached_and_says_how_to_go_on(long_corpus, tmp_path):
    """A scheduler's SIGTERM mid-epoch (no timed save due: checkpoint_minutes = 0): last/ is saved
    at the step training reached, one line says how to continue, exit 143; the resumed run goes
    on from that step. Before: killed outright, nothing saved since the run began."""
    run = tmp_path / "run"
    args = ["--data", str(long_corpus), "--out", str(run), *TINY, "--train.epochs=1", "--train.log_every=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "train", *args, "--train.checkpoint_minutes=0"],
        env=CLI_ENV, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not logged(5)(run):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    lines = proc.stderr.read().strip().splitlines()
    step = json.loads((run / "last" / "checkpoint.json").read_text())["step"]
    assert step >= 5 and step >= rows(run)[-1]["step"]  # every step logged is in the checkpoint
    go_on = f"to continue from its last checkpoint (step {step}): rnnkit train --resume {run}"
    assert lines[-2] == f"rnnkit train: stopped; {go_on}"
    assert lines[-1] == "rnnkit train: stopped (SIGTERM)" and not any("Traceback" in x for x in lines)
    killed_when(run, "--resume", str(run), ready=lambda r: any(x.get("step", 0) > step + 2 for x in rows(r)))
    steps = [r["step"] for r in rows(run) if "train_loss" in r]
    assert steps == sorted(set(steps)) and step + 1 in steps  # on from the step saved, none twice
