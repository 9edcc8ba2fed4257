"""The command behaves as Unix tools do: quiet on a closed pipe, files that respect the umask,
usage errors from the subcommand, settings with a space, fast help, the same flags everywhere.

Each test runs the real console script (``python -m rnnkit`` in a subprocess) where the
behaviour is about the process: its exit status, its standard streams, its file modes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import write_toy_lm_corpus
from rnnkit.cli.main import build_parser, split_overrides
from rnnkit.fileio import write_text_atomic

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def rnnkit(*args, umask: int | None = None, **kw):
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args],
        capture_output=True,
        text=True,
        env=ENV,
        preexec_fn=preexec,
        timeout=300,
        **kw,
    )


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny language model run, trained under umask 022 (a common default)."""
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("conventions"), vocab=8, length=6, train=60, valid=10)
    out = root / "run"
    settings = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    proc = rnnkit("train", "--data", str(root), "--out", str(out), *settings, umask=0o022)
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_closed_pipe_ends_the_command_quietly(lm_run, tmp_path):
    """Finding 6: ``rnnkit score RUN big.txt | head -1`` printed a BrokenPipeError traceback."""
    text = tmp_path / "big.txt"
    text.write_text("w1 w2 w3 w4\n" * 20000)  # far more output than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "score", str(lm_run), str(text)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as the shell reports a killed `yes | head`
    assert first.startswith(b"1\t")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    """Finding 7: the temporary file's 0600 leaked into every output whatever the umask."""
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "out.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode


def test_a_run_directory_is_readable_by_others_under_umask_022(lm_run):
    files = [p for p in lm_run.rglob("*") if p.is_file() and p.name != ".lock"]
    assert {"config.json", "vocab.json", "summary.json", "checkpoint.json"} <= {p.name for p in files}
    assert any(p.suffix == ".safetensors" for p in files)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o644)}, modes


def test_a_setting_may_be_given_with_a_space():
    """Finding 13: ``--model.cell gru`` was an unrecognised argument."""
    overrides, unknown = split_overrides(["--model.cell", "gru", "--train.lr=20", "--task", "tag", "--x"])
    assert overrides == ["--model.cell=gru", "--train.lr=20", "--task=tag"]
    assert unknown == ["--x"]
    assert split_overrides(["--train.lr", "-1"]) == (["--train.lr=-1"], [])


def test_a_subcommand_error_names_that_subcommand():
    """Finding 13: errors inside a subcommand printed the top level's usage. Issue 18: a usage
    error is one line, as every other error, pointing to that subcommand's --help."""
    proc = rnnkit("score", "RUN", "FILE", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("rnnkit score: error: ") and "--bogus" in proc.stderr
    assert proc.stderr.endswith("(rnnkit score --help for usage)\n") and proc.stderr.count("\n") == 1
    proc = rnnkit("evaluate", "RUN", "--model.cell=gru")
    assert proc.stderr.startswith("rnnkit evaluate: error: ") and "settings are for train" in proc.stderr
    assert "(rnnkit evaluate --help for usage)" in proc.stderr and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_help_answers_without_importing_torch():
    """Finding 16: ``rnnkit --help`` took 3.6 s because it imported torch."""
    probe = (
        "import sys; from rnnkit.cli.main import main\n"
        "for argv in ([], ['train', '--help'], ['diagnose', '--help'], ['config', '--help'],\n"
        "             ['evaluate', '--help'], ['tune-adapt', '--help'], ['score', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
    assert rnnkit("--help").returncode == 0  # its speed is the import above: a timed check only flaked


def test_a_bad_argument_answers_without_importing_torch():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rnnkit", "next", "RUN"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 2 and "rnnkit next: error: " in proc.stderr
    assert "| torch\n" not in proc.stderr and " torch\n" not in proc.stderr


@pytest.mark.parametrize(
    "command",
    ["train", "evaluate", "generate", "score", "next", "predict", "diagnose", "demo", "experiment"],
)
def test_every_command_takes_json_and_device(command):
    """Finding 15: demo and experiment lacked --json; train, diagnose, demo, experiment --device."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    flags = {flag for action in sub._actions for flag in action.option_strings}
    assert {"--json", "--device"} <= flags


def test_next_and_generate_share_the_top_k_name():
    parser = build_parser()
    args = parser.parse_args(["next", "RUN", "the", "--top-k", "3"])
    assert args.k == 3
    assert parser.parse_args(["next", "RUN", "the", "-k", "4"]).k == 4
    assert parser.parse_args(["generate", "RUN", "--top-k", "5"]).top_k == 5


def test_train_device_is_a_setting(lm_run, tmp_path):
    """``train --device`` is the config's train.device: a device that is not here is refused in one line."""
    root = lm_run.parent
    proc = rnnkit(
        "train", "--data", str(root), "--out", str(tmp_path / "r"), "--device", "nosuch", "--no-progress"
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "nosuch" in proc.stderr
