"""The rnnkit command: --help, --version, the demo, errors in one line."""

from __future__ import annotations

import json
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


def test_demo_runs_end_to_end_and_writes_its_page(capsys, tmp_path):
    """A short demo (its claims need the full run: see test_demo_claims.py)."""
    assert main(["demo", "--steps", "20", "--out", str(tmp_path / "demo"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("elman", "irnn", "gru", "lstm"))]
    assert [r[0] for r in rows] == ["elman-sigmoid", "elman-tanh", "irnn", "gru", "lstm"]
    assert all(len(r) == 8 for r in rows)  # cell, 3 accuracies, 3 gradient norms, seconds
    parity = float(out.split("max difference ")[1].split(")")[0])
    assert parity < 1e-10  # fast path == reference path in float64
    assert out.count("[held]") + out.count("[did not hold]") == 3
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["seed"] == 3 and len(summary["claims"]) == 3
    for name in ("index.html", "accuracy.png", "gradient.png", "training.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000
    page = (tmp_path / "demo" / "index.html").read_text()
    assert "gradient.png" in page and "lstm" in page


def test_bad_argument_is_one_line_and_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "rnnkit", "demo", "--steps", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--steps" in proc.stderr
    assert "Traceback" not in proc.stderr
