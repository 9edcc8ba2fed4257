"""The rnnkit command: --help, --version, the demo, errors in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rnnkit
from rnnkit.cli.main import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnkit {rnnkit.__version__}"


def test_help_lists_demo(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "usage: rnnkit" in out


def test_demo_learns_and_checks_parity(capsys):
    assert main(["demo", "--steps", "150"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("gru", "lstm"))}
    for name in ("gru", "lstm"):
        err, start, end = (float(v) for v in rows[name][1:4])
        assert err < 1e-10  # fast path == reference path in float64
        assert end < start / 2  # it learned something in 150 steps


def test_bad_argument_is_one_line_and_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "rnnkit", "demo", "--steps", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--steps" in proc.stderr
    assert "Traceback" not in proc.stderr
