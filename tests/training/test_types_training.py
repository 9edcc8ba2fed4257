"""``mypy --strict`` on the training modules that are annotated to that standard (issue 17).

``state.py`` (the one training state) and the modules it is made of pass; ``loop.py`` waits
for ``cells/base.py:detach_state`` to be annotated, ``make_task``'s corpus argument and
``Task.running``'s count (a float once summed over ranks); ``checkpoint.py`` and
``lock.py`` for ``dict``/``PathLike`` type arguments and the lock's optional file.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency: pip install -e '.[dev]'")
if importlib.util.find_spec("tqdm-stubs") is None:
    pytest.skip("types-tqdm (tqdm's type stubs) is a dev dependency", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
STRICT = ["state", "averaging", "distributed", "guard", "progress", "schedules", "clipping"]


def test_mypy_strict_passes_on_the_training_state(tmp_path):
    files = [str(ROOT / "src/rnnkit/training" / f"{name}.py") for name in STRICT]
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary"]
    command += ["--cache-dir", str(tmp_path / "cache"), *files]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
