"""Crash anywhere, lose nothing: a training run SIGKILLed at random moments (start-up,
steps, checkpoint writes, validation) and resumed each time ends bit-identical to the same
run uninterrupted, and every checkpoint on disk is whole after every kill.

CI kills a few times; the long variant is ``RNNKIT_CHAOS_KILLS=20 pytest
tests/training/test_chaos.py -s`` (``RNNKIT_CHAOS_SEED`` picks the moments).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from conftest import last_weights, write_toy_lm_corpus
from rnnkit.training.checkpoint import RECORD, verify_checkpoint

KILLS = int(os.environ.get("RNNKIT_CHAOS_KILLS", "4"))
SEED = int(os.environ.get("RNNKIT_CHAOS_SEED", "0"))
SETTINGS = [
    "--model.cell=lstm",
    "--model.hidden_size=16",
    "--model.embed_size=16",
    "--model.dropout=0.3",
    "--train.epochs=2",
    "--train.batch_size=4",
    "--train.bptt=6",
    "--train.variable_bptt=true",
    "--train.checkpoint_every=1",  # a save after every step: many kills land inside one
    "--train.eval_every=10",
    "--train.threads=1",
    "--train.lr=2",
    "--train.log_every=3",
    "--no-progress",
]
TIMING = ("tokens_per_s", "seconds", "wall_seconds", "time", "elapsed_s")


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _timed_run(args: list[str], run: Path) -> tuple[float, float]:
    """Run to the end; return (seconds to the first checkpoint, seconds in all)."""
    first: list[float] = []
    start = time.perf_counter()
    proc = _start(args)

    def watch() -> None:
        while proc.poll() is None and not first:
            if (run / "last" / RECORD).exists():
                first.append(time.perf_counter() - start)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, err = proc.communicate(timeout=600)
    watcher.join()
    assert proc.returncode == 0, err[-2000:]
    return first[0], time.perf_counter() - start


def _whole(run: Path) -> dict:
    """Every checkpoint in ``run`` is whole; returns what a kill left beside them."""
    left = {}
    for which in ("last", "best"):
        directory = run / which
        if (directory / RECORD).exists():
            record = verify_checkpoint(directory)
            named = {record.get("weights"), record.get("state"), RECORD}
            left[which] = sorted(p.name for p in directory.iterdir() if p.name not in named)
    return left


def _until_saved(proc: subprocess.Popen, run: Path, limit: float = 120.0) -> None:
    """Wait until ``proc`` has written a checkpoint record of its own (or has ended)."""
    record, start = run / "last" / RECORD, time.time()
    while proc.poll() is None and time.time() - start < limit:
        if record.exists() and record.stat().st_mtime > start:
            break
        time.sleep(0.005)


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_killed_at_random_moments_and_resumed_equals_uninterrupted(tmp_path):
    data = write_toy_lm_corpus(tmp_path, train=max(120, 30 * KILLS))
    fresh = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *SETTINGS]
    whole = tmp_path / "whole"
    first, total = _timed_run(["train", "--data", str(data), "--out", str(whole), *SETTINGS], whole)
    # One kill in five lands in start-up (from its middle to the first save); the others a
    # random time into the training, once this process has saved a checkpoint, within a
    # 1/(KILLS + 1) share of it: however the moments fall, the run cannot end before all
    # its kills.
    share = (total - first) / (KILLS + 1)
    rng = random.Random(SEED)
    run = tmp_path / "run"
    kills, moments = (
        0,
        {
            "before its settings": 0,
            "before a checkpoint": 0,
            "mid-save, files left behind": 0,
            "elsewhere": 0,
        },
    )
    while True:
        args = ["train", "--resume", str(run), "--no-progress"] if (run / "config.json").exists() else fresh
        proc = _start(args)
        if kills == KILLS:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
            break
        try:
            if rng.random() < 0.2:
                _, err = proc.communicate(timeout=rng.uniform(0.3 * first, first))
            else:
                _until_saved(proc, run)
                _, err = proc.communicate(timeout=rng.uniform(0, share))
            raise AssertionError(
                f"the run ended (exit {proc.returncode}) before kill {kills + 1}: {err[-500:]}"
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -9
        kills += 1
        left = _whole(run)  # raises if a checkpoint on disk is unreadable
        if not (run / "config.json").exists():
            moments["before its settings"] += 1
        elif not (run / "last" / RECORD).exists():
            moments["before a checkpoint"] += 1
        else:
            moments["mid-save, files left behind" if any(left.values()) else "elsewhere"] += 1
    print(f"\nchaos: {kills} SIGKILLs (seed {SEED}): " + ", ".join(f"{n} {k}" for k, n in moments.items()))
    a, b = last_weights(whole), last_weights(run)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for which in ("last", "best"):
        assert _whole(run)[which] == []  # what the kills left is gone
    best = [json.loads((r / "best" / RECORD).read_text())["step"] for r in (whole, run)]
    assert best[0] == best[1]
    assert _metrics(run) == _metrics(whole)
    summaries = [json.loads((r / "summary.json").read_text()) for r in (run, whole)]
    summaries = [{k: v for k, v in s.items() if k != "run"} for s in summaries]  # time, command line
    assert summaries[0] == summaries[1]
