"""RunDir names every file of a run directory, and the names are the ones training writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.training import rundir
from rnnkit.training.rundir import RunDir

SRC = Path(__file__).resolve().parents[2] / "src" / "rnnkit"


def test_every_name_is_a_path_under_the_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.path == tmp_path and str(run) == str(tmp_path)
    expected = {
        "config": "config.json",
        "data": "data.json",
        "lock": ".lock",
        "vocab": "vocab.json",
        "tokenizer": "tokenizer.json",
        "tagging": "tagging.json",
        "classification": "classification.json",
        "metrics": "metrics.jsonl",
        "learning_curve": "learning_curve.png",
        "summary": "summary.json",
        "best": "best",
        "last": "last",
        "diagnose": "diagnose",
    }
    for attribute, name in expected.items():
        assert getattr(run, attribute) == tmp_path / name
    assert run.checkpoint("best") == tmp_path / "best" and run.checkpoint("last") == tmp_path / "last"
    assert run.record("last") == tmp_path / "last" / "checkpoint.json"
    assert {"data.json", ".lock"} == rundir.NOT_A_RUN_YET
    assert not any(tmp_path.iterdir())  # naming reads and creates nothing


def test_accepts_str_and_pathlike_and_is_frozen(tmp_path: Path) -> None:
    assert RunDir(str(tmp_path)) == RunDir(tmp_path)
    assert Path(RunDir(tmp_path)) == tmp_path  # os.PathLike
    with pytest.raises(AttributeError):
        RunDir(tmp_path).path = tmp_path  # type: ignore[misc]


def test_unknown_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(RnnkitError, match="which must be 'best' or 'last', got 'middle'"):
        RunDir(tmp_path).checkpoint("middle")


def test_imports_only_the_standard_library_and_the_error_type() -> None:
    tree = ast.parse((SRC / "training" / "rundir.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "os", "dataclasses", "pathlib", "rnnkit.errors"}


TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


@pytest.mark.parametrize("task", ["lm", "tag"])
def test_a_trained_run_holds_only_what_rundir_names(tmp_path: Path, capsys, task: str) -> None:
    """What ``rnnkit train`` and ``rnnkit diagnose`` write is named here, so no module need spell it."""
    if task == "lm":
        data = write_toy_lm_corpus(tmp_path, vocab=8, length=6, train=40, valid=10)
        text = "w1 w2 w3 w4"
    else:
        data = write_toy_treebank(tmp_path / "tb", train=20)
        text = "the cat sat on the mat"
    out = tmp_path / "run"
    assert main(["train", f"--task={task}", "--data", str(data), "--out", str(out), *TINY]) == 0
    assert main(["diagnose", str(out), "--text", text, "--what", "spectrum"]) == 0
    capsys.readouterr()
    run = RunDir(out)
    named = {
        getattr(run, name)
        for name in (
            "config",
            "written_config",
            "data",
            "vocab",
            "tokenizer",
            "tagging",
            "classification",
            "metrics",
        )
    }
    named |= {run.learning_curve, run.summary, run.best, run.last, run.diagnose}
    assert set(out.iterdir()) <= named
    assert {run.config, run.data, run.metrics, run.summary, run.best, run.last, run.diagnose} <= set(
        out.iterdir()
    )
    assert (run.vocab if task == "lm" else run.tagging).is_file()
    assert not run.lock.exists()  # released when the session ended
    assert run.record("best").is_file() and run.record("last").is_file()
