"""Messages name their file or setting, and a run that trains nothing says so (issue 18).

Through the console script, as a user meets them: ``--train.epochs=0`` once ended in
``best: no checkpoint here``; a resumed run with no epoch left said nothing about it; a
config.json nested too deeply was a RecursionError (status 70) in every verb that reads a run;
``--resume RUN --train.lr=3`` did not say how settings change on resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_rnnkit, write_toy_lm_corpus

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.batch_size=4", "--train.bptt=5"]


rnnkit = run_rnnkit


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_toy_lm_corpus(tmp_path_factory.mktemp("messages"), vocab=8, length=6, train=60, valid=10)


@pytest.fixture(scope="module")
def trained(corpus) -> Path:
    run = corpus / "run"
    proc = rnnkit(
        "train", "--data", str(corpus), "--out", str(run), *TINY, "--train.epochs=1", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    return run


def test_zero_epochs_is_refused_naming_the_setting(corpus, tmp_path):
    proc = rnnkit("train", "--data", str(corpus), "--out", str(tmp_path / "r"), "--train.epochs=0")
    assert_one_line_error(proc, "train.epochs", "at least 1")
    assert "no checkpoint" not in proc.stderr and not (tmp_path / "r").exists()


def test_a_resumed_run_with_no_epoch_left_says_so(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    proc = rnnkit("train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "nothing left to train" in line]
    assert (
        len(said) == 1 and str(run) in said[0] and "train.epochs" in said[0] and "--accept-edits" in said[0]
    )


def test_resume_with_settings_says_where_they_are_changed(trained):
    proc = rnnkit("train", "--resume", str(trained), "--train.lr=3")
    assert_one_line_error(proc, f"--resume {trained}", "config.json", "--accept-edits")


def test_a_config_json_nested_too_deeply_is_one_line_in_any_verb(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    for args in (["generate", str(run)], ["score", str(run), "-"], ["train", "--resume", str(run)]):
        assert_one_line_error(rnnkit(*args), str(run / "config.json"), "nested too deeply")


def test_an_old_config_json_is_read_whatever_the_sha256(trained, tmp_path):
    """The sha256 is not a setting: a run's readers (generate here) skip it, and a run of an
    older rnnkit (no sha256) still loads."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert rnnkit("generate", str(run), "--num", "1", "--max-tokens", "3").returncode == 0
    data = json.loads((run / "config.json").read_text())
    del data["sha256"]
    (run / "config.json").write_text(json.dumps(data))
    assert rnnkit("generate", str(run), "--num", "1", "--max-tokens", "3").returncode == 0


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (["--train.batch_size=100"], "train.batch_size"),  # 110 training tokens: 1 row
        (["--train.batch_size=4", "--train.eval_batch_size=3"], "train.eval_batch_size"),  # 4 valid tokens
    ],
)
def test_a_split_too_short_for_its_columns_names_the_setting(tmp_path, settings, named):
    (tmp_path / "train.txt").write_text("a b c d e f g h i j\n" * 10)
    (tmp_path / "valid.txt").write_text("a b c\n")
    tiny = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    proc = rnnkit("train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), *tiny, *settings)
    assert_one_line_error(proc, named)
