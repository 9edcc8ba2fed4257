"""Issue 16, item 17: training progress shows the epoch as i/n, the whole run's ETA, the speed
with its unit and a loss from the first step; a log file gets plain lines, never ``\\r`` frames."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.training.progress import Progress, duration, eta_seconds, rate_unit, steps_left

RNNKIT = str(Path(sys.executable).parent / "rnnkit")  # the console script, as a user runs it
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.batch_size=4", "--train.threads=1"]


def rnnkit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [RNNKIT, *args], capture_output=True, timeout=300, env=env, cwd=cwd
    )  # bytes: a '\r' must not be read as a newline


def test_eta_is_the_steps_left_at_the_rate_so_far():
    assert eta_seconds(elapsed=10.0, steps_done=20, steps_left=30) == pytest.approx(15.0)
    assert eta_seconds(elapsed=10.0, steps_done=0, steps_left=30) is None  # no rate yet
    assert eta_seconds(elapsed=0.0, steps_done=5, steps_left=30) is None
    assert eta_seconds(elapsed=4.0, steps_done=4, steps_left=0) == 0.0
    # epoch 3 of 13, 10 of 100 steps taken: its 90 and ten more epochs' 1000
    assert steps_left(epoch=3, epochs=13, done=10, total=100) == 1090
    assert steps_left(epoch=13, epochs=13, done=100, total=100) == 0
    assert [duration(s) for s in (None, 0.4, 45, 185, 7620)] == ["?", "0s", "45s", "3m05s", "2h07m"]


def test_the_speed_says_what_it_counts():
    assert rate_unit("lm", "word") == "words/s"
    assert rate_unit("lm", "char") == "characters/s"
    assert rate_unit("lm", "bpe") == "subwords/s"
    assert rate_unit("tag") == "words/s"  # a tagger's Step.count is its tokens
    assert rate_unit("classify") == "sentences/s"  # a classifier's is its sentences


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_epoch_of_n_loss_speed_and_the_runs_eta():
    screen = _Terminal()
    meter = Progress(epochs=13, unit="words/s", stream=screen)
    meter.begin(epoch=3, total=100, done=0)
    meter.step({"loss": 5.5, "ppl": 244.7}, lr=1.0, norm=0.5, rate=9000.0)
    meter.bar.refresh()
    assert "1/100" in screen.getvalue().split("\r")[-1] and "loss 5.5 ppl 244.7" in screen.getvalue()
    for _ in range(9):
        meter.step({"loss": 5.25, "ppl": 190.6}, lr=1.0, norm=0.5, rate=9163.0)
    meter.bar.refresh()
    shown = screen.getvalue()
    meter.end()
    assert "epoch 3/13" in shown and "loss 5.25" in shown and "9163 words/s" in shown
    assert re.search(r"ETA (\d+[smh]|\d+m\d\ds)", shown)
    assert meter.eta() is not None


def test_plain_lines_come_at_the_first_step_and_each_quarter():
    log = io.StringIO()  # not a terminal
    meter = Progress(epochs=2, unit="words/s", stream=log, interval=1e9)
    meter.begin(epoch=1, total=8, done=0)
    for _ in range(8):
        meter.step({"loss": 2.0}, lr=1.0, norm=0.5, rate=100.0)
    meter.end()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" | ")[1] for line in lines] == [
        " 12% 1/8 batches",
        " 25% 2/8 batches",
        " 50% 4/8 batches",
        " 75% 6/8 batches",
    ]
    assert all(line.startswith("epoch 1/2 | ") and "loss 2 |" in line for line in lines)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_lm_corpus(tmp_path_factory.mktemp("progress"), vocab=8, length=6, train=60, valid=10)


def test_stderr_to_a_file_gets_plain_lines_not_frames(corpus, tmp_path):
    """Before: 9 '\\r' frames in a 2-epoch tiny run's log, 'epoch   1', '1574 per s'."""
    run = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--out", str(run), "--train.epochs=2", "--train.bptt=4", *TINY]
    proc = rnnkit(*args)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    err = proc.stderr.decode()
    assert b"\r" not in proc.stderr and "\x1b" not in err  # no frames, no control sequences
    lines = err.splitlines()
    periodic = [line for line in lines if re.match(r"epoch [12]/2 \| +\d+% \d+/\d+ batches \| loss ", line)]
    assert periodic[0].startswith("epoch 1/2 |   ") and " 1/" in periodic[0]  # a loss from the first step
    assert any(line.startswith("epoch 2/2 |") for line in periodic)
    assert all(" words/s | ETA " in line for line in periodic)
    ends = [line for line in lines if re.match(r"epoch [12]/2 \| lr ", line)]
    assert len(ends) == 2 and all(re.search(r"\| \d+ words/s", line) for line in ends)
    assert "ETA" in ends[0] and "per s" not in err


def test_a_tagger_counts_words_per_second(tmp_path):
    root = write_toy_treebank(tmp_path / "ud", train=20)
    run = tmp_path / "tagger"
    proc = rnnkit("train", "--task=tag", "--data", str(root), "--out", str(run), "--train.epochs=1", *TINY)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    err = proc.stderr.decode()
    assert b"\r" not in proc.stderr
    assert re.search(r"^epoch 1/1 \| +\d+% .* words/s \| ETA", err, re.M)
    assert re.search(r"^epoch 1/1 \| lr .* \d+ words/s$", err, re.M)
    # item 18: a tagger's next commands are its own, and the first one works as printed
    out = proc.stdout.decode()
    assert (
        f"next: rnnkit evaluate {run} --split test --report\n" in out and f"rnnkit predict {run} FILE" in out
    )
    assert rnnkit("evaluate", str(run), "--split", "test", "--report").returncode == 0


@pytest.mark.skipif(sys.platform == "win32", reason="no pseudo-terminals")
def test_on_a_real_terminal_the_bar_shows_the_loss_from_its_first_frame(corpus, tmp_path):
    """The console script on a pseudo-terminal 160 columns wide, as a user's shell runs it."""
    import fcntl
    import pty
    import struct
    import termios

    run = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--out", str(run), "--train.epochs=2", "--train.bptt=4", *TINY]
    pid, fd = pty.fork()
    if pid == 0:  # the child (a copy of pytest): a terminal of known size, then the command
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
            # every update drawn (tqdm's own setting), however fast this machine takes the steps
            env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_MININTERVAL": "0"}
            os.execve(RNNKIT, [RNNKIT, *args], env)
        finally:
            os._exit(127)  # never back into pytest
    screen = bytearray()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child is gone
            break
        if not data:
            break
        screen.extend(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, screen.decode(errors="replace")[-2000:]
    frames = [f for f in screen.decode(errors="replace").split("\r") if re.match(r"epoch \d/2: +\d+%\|", f)]
    stepped = [f for f in frames if int(re.search(r"\| (\d+)/\d+ \[", f).group(1)) > 0]
    assert stepped and all(" loss " in f and " words/s | ETA " in f for f in stepped)  # from step 1
    assert any(" 1/" in f for f in stepped)
    assert any(f.startswith("epoch 2/2:") for f in frames)
