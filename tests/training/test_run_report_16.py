"""Issue 16, item 18: the end of a run says how long it took, where the best checkpoint is and
what to run next; summary.json records how the run was made; checkpoints carry a format
version; a clean exit removes the lock; Ctrl-C prints the command that continues the run."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import rnnkit
from conftest import write_toy_lm_corpus
from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model
from rnnkit.training.checkpoint import FORMAT, FORMAT_KEY, load_checkpoint, save_checkpoint
from rnnkit.training.lock import RunLock, fcntl

RNNKIT = str(Path(sys.executable).parent / "rnnkit")  # the console script, as a user runs it
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.batch_size=4", "--train.bptt=4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def rnnkit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RNNKIT, *args], capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_lm_corpus(tmp_path_factory.mktemp("report"), vocab=8, length=6, train=60, valid=10)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    args = ["train", "--data", str(corpus), "--out", str(run), "--train.epochs=2", "--no-progress", *TINY]
    proc = rnnkit_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run, args, proc


def test_the_end_of_a_run_says_time_best_checkpoint_and_what_next(trained):
    """Before: only 'best_valid: ppl ...' (and 'test: ...')."""
    run, _, proc = trained
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("best_valid: ppl ")
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    assert lines[2].startswith("trained in ")
    assert f"best checkpoint: {run / 'best'} (epoch {best['epoch']}, step {best['step']})" in lines[2]
    # the toy corpus has no test split: the suggestion must be one that works
    assert lines[3] == f"next: rnnkit evaluate {run} --split valid"
    assert lines[4].strip() == f"rnnkit generate {run}"
    evaluated = rnnkit_cli("evaluate", str(run), "--split", "valid")
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("valid: ppl ")


def test_summary_records_how_the_run_was_made(trained):
    run, args, _ = trained
    summary = json.loads((run / "summary.json").read_text())
    facts = summary["run"]
    assert set(summary) == {"best_valid", "run"}
    assert isinstance(facts["seconds"], float) and 0 < facts["seconds"] < 300
    assert facts["sessions"] == 1 and facts["session_seconds"] == facts["seconds"]
    assert facts["rnnkit"] == rnnkit.__version__ and facts["torch"] == torch.__version__
    assert facts["command"] == [RNNKIT, *args]
    assert facts["host"] == socket.gethostname()
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    assert facts["best"] == {"path": str(run / "best"), "epoch": best["epoch"], "step": best["step"]}


def test_a_clean_exit_removes_the_lock(trained):
    """Before: an empty RUN/.lock stayed behind."""
    run, _, _ = trained
    assert not (run / ".lock").exists()


def test_json_stays_one_line_on_stdout(corpus, tmp_path):
    run = tmp_path / "run"
    proc = rnnkit_cli("train", "--data", str(corpus), "--out", str(run), "--train.epochs=1", "--json", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = proc.stdout.splitlines()
    figures = json.loads(line)
    assert figures["unit"] == "word" and figures["best_valid"]["ppl"] > 0
    assert figures["run"]["best"]["path"] == str(run / "best")
    assert f"next: rnnkit evaluate {run} --split valid" in proc.stderr  # the words go to stderr


def test_checkpoints_carry_their_format(trained):
    run, _, _ = trained
    files = sorted(run.glob("*/*.safetensors"))
    assert {f.parent.name for f in files} == {"best", "last"} and any(
        f.name.startswith("state-") for f in files
    )
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata() == {"format": "pt", FORMAT_KEY: str(FORMAT)}, path


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model(ModelConfig(embed_size=8, hidden_size=8, num_layers=1), vocab_size=12)


def _rewrite_weights(directory: Path, metadata: dict | None) -> None:
    """Rewrite a checkpoint's weights with other metadata (and the record's sha256 to match)."""
    import hashlib

    record = json.loads((directory / "checkpoint.json").read_text())
    path = directory / record["weights"]
    data = safetensors.torch.save(safetensors.torch.load(path.read_bytes()), metadata=metadata)
    path.write_bytes(data)
    record["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (directory / "checkpoint.json").write_text(json.dumps(record))


def test_a_checkpoint_from_before_formats_still_loads(tmp_path):
    a, b = _model(0), _model(1)
    save_checkpoint(tmp_path, a, {"epoch": 1}, step=3)
    _rewrite_weights(tmp_path, None)  # as rnnkit wrote them before: no metadata at all
    load_checkpoint(tmp_path, b)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_future_format_is_refused_in_one_line(tmp_path, trained):
    save_checkpoint(tmp_path, _model(0), {}, step=3)
    _rewrite_weights(tmp_path, {"format": "pt", FORMAT_KEY: str(FORMAT + 1)})
    with pytest.raises(RnnkitError, match=rf"checkpoint format {FORMAT + 1} is newer than rnnkit"):
        load_checkpoint(tmp_path, _model(1))
    run = tmp_path / "future"
    shutil.copytree(trained[0], run)
    _rewrite_weights(run / "best", {"format": "pt", FORMAT_KEY: str(FORMAT + 1)})
    proc = rnnkit_cli("generate", str(run))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "upgrade rnnkit" in proc.stderr


def test_ctrl_c_prints_the_command_that_continues_the_run(corpus, tmp_path):
    run = tmp_path / "run"
    # ~100 steps, 4 validations and 4 plots after the first checkpoint: seconds left to stop it
    args = ["train", "--data", str(corpus), "--out", str(run), "--train.epochs=4", "--no-progress"]
    proc = subprocess.Popen(
        [RNNKIT, *args, *TINY, "--train.checkpoint_every=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        # as a terminal's foreground job gets it: a suite started in the background (`cmd &`)
        # passes SIGINT ignored to every child, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "last" / "checkpoint.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint came"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-2].startswith("rnnkit train: stopped; to continue from its last checkpoint (step ")
    assert lines[-2].endswith(f": rnnkit train --resume {run}")
    assert lines[-1] == "rnnkit train: interrupted"
    assert not (run / ".lock").exists()  # Ctrl-C is an exit the process lives through
    command = shlex.split(lines[-2].rsplit(": ", 1)[1])  # the printed command works as printed
    resumed = subprocess.run([RNNKIT, *command[1:]], capture_output=True, text=True, timeout=300, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    facts = json.loads((run / "summary.json").read_text())["run"]
    assert facts["sessions"] == 2 and facts["seconds"] > facts["session_seconds"] > 0
    assert "over 2 sessions" in resumed.stdout


@pytest.mark.skipif(fcntl is None, reason="no fcntl: runs are not locked here")
def test_the_lock_goes_with_any_exit_and_never_guards_a_removed_file(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt), RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        raise KeyboardInterrupt
    assert not (tmp_path / ".lock").exists()
    # A trainer finishing between our open and our flock removes the file we opened: we must
    # not take a lock on it for the run's (the next one would create and lock a new file).
    flock, calls = fcntl.flock, []

    def finishing_holder(fd, op):
        if not calls:
            (tmp_path / ".lock").unlink()
            (tmp_path / ".lock").write_text("")
        calls.append(op)
        return flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", finishing_holder)
    with RunLock(tmp_path) as lock:
        assert os.path.samestat(os.fstat(lock.file.fileno()), os.stat(tmp_path / ".lock"))
    assert len(calls) >= 3  # the first try, the second, the unlock
