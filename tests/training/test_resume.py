"""Exact resume: a run killed with SIGKILL (also in the middle of writing a checkpoint) and
resumed ends with weights bit-identical to the same run uninterrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import last_weights, write_toy_lm_corpus, write_toy_treebank

SETTINGS = [
    "--model.cell=lstm",
    "--model.hidden_size=16",
    "--model.embed_size=16",
    "--model.dropout=0.3",
    "--train.epochs=3",
    "--train.batch_size=4",
    "--train.bptt=6",
    "--train.variable_bptt=true",
    "--train.checkpoint_every=4",
    "--train.threads=1",
    "--train.lr=2",
    "--train.log_every=2",
]
# NT-ASGD with every AWD regulariser: averaging starts after epoch 2 in this run (the test
# checks it had started when the run was killed), so its averages must resume exactly too.
AWD = [
    *SETTINGS[:4],
    "--model.locked_dropout=true",
    "--model.weight_drop=0.3",
    "--model.embedding_dropout=0.1",
    "--train.epochs=4",
    "--train.optimizer=ntasgd",
    "--train.nonmono=1",
    *SETTINGS[5:],
]

# Fixed windows and a checkpoint after every step: epoch 1 is 45 steps (45 records written),
# then its end writes best's record (46th) and last's (47th). Killed inside the 47th, the
# run resumes from step 45's checkpoint with the epoch's end line already in the log.
EVERY_STEP = [*SETTINGS[:7], "--train.variable_bptt=false", "--train.checkpoint_every=1", *SETTINGS[9:]]
TIMING = ("tokens_per_s", "time", "elapsed_s")

# Runs rnnkit train, SIGKILLing itself at the n-th call of `target` in the checkpoint module:
# after a whole checkpoint ("save_checkpoint"), or half-way through one, after the tensors
# were written and before the JSON record ("write_text_atomic").
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import rnnkit.training.checkpoint as ck
    import rnnkit.training.loop as loop
    target, n = sys.argv[1], int(sys.argv[2])
    calls = {"n": 0}
    original = getattr(ck, target)
    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if target == "write_text_atomic" and calls["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if target == "save_checkpoint" and calls["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(ck, target, wrapped)
    if target == "save_checkpoint":
        loop.save_checkpoint = wrapped
    from rnnkit.cli.main import main
    raise SystemExit(main(sys.argv[3:]))
    """
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_lm_corpus(tmp_path_factory.mktemp("corpus"))


def _figures(run) -> dict:
    """summary.json less its "run" facts (time, command line: not the same when resumed)."""
    return {k: v for k, v in json.loads((run / "summary.json").read_text()).items() if k != "run"}


def _run(args, env_threads="1", check=True):
    env = {**os.environ, "OMP_NUM_THREADS": env_threads}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    runs = {}

    def get(settings: list[str]):
        key = tuple(settings)
        if key not in runs:
            runs[key] = tmp_path_factory.mktemp("a") / "run"
            args = ["-m", "rnnkit", "train", "--data", str(corpus), "--out", str(runs[key]), "--no-progress"]
            _run([*args, *settings])
        return runs[key]

    return get


@pytest.mark.parametrize(
    "settings, kills",
    [
        (SETTINGS, [("save_checkpoint", 3)]),
        (SETTINGS, [("write_text_atomic", 4), ("save_checkpoint", 2)]),
        (AWD, [("save_checkpoint", 25)]),
        (SETTINGS, [("write_text_atomic", 1)]),
        (EVERY_STEP, [("write_text_atomic", 47)]),
    ],
    ids=[
        "after-a-checkpoint",
        "mid-write-then-again",
        "ntasgd-averaging-awd",
        "before-the-first-checkpoint",
        "between-an-epochs-end-and-its-save",
    ],
)
def test_killed_and_resumed_equals_uninterrupted(corpus, uninterrupted, tmp_path, settings, kills):
    run = tmp_path / "run"
    first = True
    for target, n in kills:
        args = ["-c", KILLER, target, str(n), "train"]
        args += ["--data", str(corpus), "--out", str(run), *settings] if first else ["--resume", str(run)]
        args.append("--no-progress")
        proc = _run(args, check=False)
        assert proc.returncode == -9, proc.stderr[-2000:]  # it really was killed
        first = False
    if settings is AWD:
        record = json.loads((run / "last" / "checkpoint.json").read_text())
        assert record["resume"]["average"]["active"] and record["resume"]["average"]["count"] > 0
    uninterrupted = uninterrupted(settings)
    _run(["-m", "rnnkit", "train", "--resume", str(run), "--no-progress"])
    a, b = last_weights(uninterrupted), last_weights(run)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert _figures(run) == _figures(uninterrupted)

    def log(directory):
        rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]

    assert log(run) == log(uninterrupted)  # no line lost, none duplicated from before the kill


def test_a_run_killed_before_its_settings_were_saved(corpus, tmp_path):
    """Only data.json (and the lock) written: --resume says to start again, and --out may."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "data.json").write_text("{}")
    (run / ".lock").write_text("")
    proc = _run(["-m", "rnnkit", "train", "--resume", str(run)], check=False)
    assert proc.returncode == 2 and "nothing was trained: start it again" in proc.stderr
    tiny = ["--model.hidden_size=4", "--model.embed_size=4", "--train.epochs=1", "--no-progress"]
    _run(["-m", "rnnkit", "train", "--data", str(corpus), "--out", str(run), *tiny])
    assert (run / "best" / "checkpoint.json").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("a user's file")
    proc = _run(
        ["-m", "rnnkit", "train", "--data", str(corpus), "--out", str(tmp_path / "other"), *tiny], check=False
    )
    assert proc.returncode == 2 and "exists and is not empty" in proc.stderr


def test_resume_refuses_other_settings(uninterrupted):
    proc = _run(
        ["-m", "rnnkit", "train", "--resume", str(uninterrupted(SETTINGS)), "--train.lr=3"], check=False
    )
    assert proc.returncode == 2 and "takes no other settings" in proc.stderr


def test_a_killed_tagger_resumes_bit_identical(tmp_path):
    """The same exact resume for the tag task: batches shuffled per epoch, characters, CRF."""
    root = write_toy_treebank(tmp_path / "ud", train=60)
    settings = ["--task=tag", "--model.bidirectional=true", "--model.hidden_size=8", "--model.embed_size=8"]
    settings += ["--model.char_embed=4", "--model.char_hidden=4", "--model.crf=true", "--model.dropout=0.3"]
    settings += [
        "--train.epochs=2",
        "--train.batch_size=4",
        "--train.checkpoint_every=3",
        "--train.eval_every=2",
        "--train.threads=1",
    ]
    settings += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run(["-m", "rnnkit", "train", "--data", str(root), "--out", str(whole), *settings])
    args = [
        "-c",
        KILLER,
        "save_checkpoint",
        "5",
        "train",
        "--data",
        str(root),
        "--out",
        str(killed),
        *settings,
    ]
    proc = _run(args, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    _run(["-m", "rnnkit", "train", "--resume", str(killed), "--no-progress"])
    a, b = last_weights(whole), last_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # validation within epochs (train.eval_every) resumed too: the same best, the same log
    assert _figures(whole) == _figures(killed)
    best = [json.loads((run / "best" / "checkpoint.json").read_text())["step"] for run in (whole, killed)]
    assert best[0] == best[1]

    def checks(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows if "check" in r]

    assert checks(whole) == checks(killed) and len(checks(whole)) >= 4
