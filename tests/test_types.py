"""A type checker runs in the test suite (issue 17, item 1): ``mypy --strict`` on tasks, training, inference.

Checked, in one mypy run: every module of ``src/rnnkit/tasks/`` (the task protocol, its three
implementations, the registry, the tagging metrics), every module of ``src/rnnkit/training/``
(the loop, the one training state and what it is made of, checkpoints, the run lock …) and
``src/rnnkit/inference.py``, with ``--strict``. ``--follow-imports=silent`` reads the modules
they import for their types without reporting those modules' own errors (they are not yet
annotated to that standard), which keeps the run to seconds once mypy's cache is warm: one
cache serves both tests, so the suite pays mypy's start-up (reading torch's types) once.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is a dev dependency: pip install -e '.[dev]'")
if importlib.util.find_spec("tqdm-stubs") is None:
    pytest.skip("types-tqdm (tqdm's type stubs) is a dev dependency", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src/rnnkit"


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """``mypy --strict`` with one cache for both tests (the first run reads torch's types: slow)."""
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(*files: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary"]
        command += ["--cache-dir", str(cache), *map(str, files)]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)

    return run


def test_mypy_strict_passes_on_the_tasks_training_and_inference(mypy):
    files = [*sorted((SRC / "tasks").glob("*.py")), *sorted((SRC / "training").glob("*.py"))]
    assert {"tagging_metrics.py", "loop.py", "checkpoint.py", "lock.py"} <= {p.name for p in files}
    result = mypy(*files, SRC / "inference.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_sees_a_task_that_breaks_the_protocol(mypy, tmp_path):
    """The check can fail: a task class whose step returns the wrong type is refused by the registry."""
    bad = tmp_path / "bad_task.py"
    bad.write_text(
        "from rnnkit.tasks import TASKS\n"
        "from rnnkit.tasks.lm import LanguageModelling\n\n"
        "class Broken(LanguageModelling):\n"
        "    def selection(self, figures: dict[str, float]) -> str:  # type: ignore[override]\n"
        "        return 'lowest'\n\n"
        "TASKS['broken'] = Broken\n"
    )
    result = mypy(bad, env={**os.environ, "MYPYPATH": str(ROOT / "src")})
    assert result.returncode == 1 and "bad_task.py:8" in result.stdout, result.stdout + result.stderr
