"""A hand-edited config.json is refused on --resume, or taken with --accept-edits and logged (issue 18).

Before, ``rnnkit train --resume`` trained on with whatever config.json said: a learning rate
edited from 1 to 20 was taken without a word, while an edit of the model's shape failed only
when the checkpoint would not load. config.json now carries the sha256 of its settings
(:func:`rnnkit.training.run.settings_sha256`), and ``.config.json`` the settings as written,
so an edit is named setting by setting.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_rnnkit, write_toy_lm_corpus
from rnnkit.config import load_config, to_dict
from rnnkit.errors import RnnkitError
from rnnkit.training.run import (
    check_edits,
    config_edits,
    read_config,
    settings_change,
    settings_sha256,
    write_config,
)

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.batch_size=4", "--train.bptt=5"]


rnnkit = run_rnnkit


def edit(run: Path, **changes: object) -> None:
    """Edit config.json by hand: ``train_lr=20`` sets ``train.lr``."""
    path = run / "config.json"
    data = json.loads(path.read_text())
    for name, value in changes.items():
        section, key = name.split("_", 1)
        data[section][key] = value
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A language model trained one epoch (train.epochs = 1, lr 1), its last/ resumable."""
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("edits"), vocab=8, length=6, train=60, valid=10)
    run = root / "run"
    proc = rnnkit("train", "--data", str(root), "--out", str(run), *TINY, "--train.epochs=1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_config_json_carries_the_sha256_of_its_settings(run):
    saved = json.loads((run / "config.json").read_text())
    config = read_config(run)
    assert saved["sha256"] == settings_sha256(config)
    assert json.loads((run / ".config.json").read_text()) == to_dict(config)
    assert config_edits(run) is None
    relaid = {k: v for k, v in reversed(list(saved.items()))}  # the same settings, laid out otherwise
    (run / "config.json").write_text(json.dumps(relaid))
    assert config_edits(run) is None


def test_an_edited_learning_rate_is_refused_naming_the_file_and_the_change(run):
    before = {p: p.read_bytes() for p in (run / "last").iterdir()}
    metrics = (run / "metrics.jsonl").read_bytes()
    edit(run, train_lr=20, train_epochs=2)
    proc = rnnkit("train", "--resume", str(run), "--no-progress")
    assert_one_line_error(
        proc, str(run / "config.json"), "train.lr 1.0 -> 20.0", "train.epochs 1 -> 2", "--accept-edits"
    )
    assert {p: p.read_bytes() for p in (run / "last").iterdir()} == before
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_accept_edits_trains_on_with_the_new_values_logs_them_and_rewrites_the_hash(run):
    edit(run, train_lr=20, train_epochs=2)
    proc = rnnkit("train", "--resume", str(run), "--accept-edits", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    said = next(line for line in proc.stdout.splitlines() if "was edited" in line)
    assert str(run / "config.json") in said and "train.lr 1.0 -> 20.0, train.epochs 1 -> 2" in said
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ends = [r for r in rows if "epoch" in r]
    [change] = [r for r in rows if "settings_changed" in r]
    assert {k: v for k, v in change.items() if k not in ("time", "elapsed_s")} == {
        "step": ends[0]["step"],
        "settings_changed": {"train.lr": [1.0, 20.0], "train.epochs": [1, 2]},
    }
    assert rows.index(ends[0]) < rows.index(change) < rows.index(ends[1])  # logged where it took effect
    assert [r["lr"] for r in ends] == [1.0, 20.0]
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["lr"] == 20.0 and saved["sha256"] == settings_sha256(read_config(run))
    again = rnnkit("train", "--resume", str(run), "--no-progress")  # the edit is now the run's own
    assert again.returncode == 0, again.stderr
    assert "nothing left to train" in again.stderr and "train.epochs" in again.stderr


def test_a_new_shape_is_refused_even_with_the_flag(run):
    edit(run, model_hidden_size=16, train_lr=2)
    proc = rnnkit("train", "--resume", str(run), "--accept-edits", "--no-progress")
    assert_one_line_error(
        proc, str(run / "config.json"), "model.hidden_size 8 -> 16", "cannot change on --resume"
    )
    assert "train.lr" not in proc.stderr  # only what cannot change is named


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"data_min_freq": 2}, "data.min_freq 1 -> 2"),
        ({"data_level": "char"}, 'data.level "word" -> "char"'),
        ({"train_optimizer": "adam"}, 'train.optimizer "sgd" -> "adam"'),  # was a KeyError on load
        ({"train_batch_size": 2}, "train.batch_size 4 -> 2"),  # the carried state has 4 columns
    ],
)
def test_what_the_checkpoint_cannot_take_is_refused_either_way(run, changes, named):
    edit(run, **changes)
    for accept in (False, True):
        with pytest.raises(RnnkitError, match="cannot change on --resume") as err:
            check_edits(run, read_config(run), accept)
        assert named in str(err.value) and str(run / "config.json") in str(err.value)


def test_before_the_first_checkpoint_anything_may_change(run):
    """Nothing to load yet (killed before last/ was saved): the run starts over with the edit."""
    shutil.rmtree(run / "last")
    edit(run, model_hidden_size=16)
    edits = check_edits(run, read_config(run), accept=True)
    assert edits is not None and edits.changes == (("model.hidden_size", 8, 16),)


def test_a_model_regulariser_may_change(run):
    edit(run, model_dropout=0.5)
    edits = check_edits(run, read_config(run), accept=True)
    assert edits is not None and edits.changes == (("model.dropout", 0.0, 0.5),)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"task": "lm",', ["corrupted run configuration"]),
        ("[1, 2]", ["expected a JSON object"]),
        ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),  # was a RecursionError, status 70
    ],
)
def test_a_broken_config_json_is_one_line(run, text, words):
    (run / "config.json").write_text(text)
    proc = rnnkit("train", "--resume", str(run), "--accept-edits")
    assert_one_line_error(proc, str(run / "config.json"), *words)


def test_edits_are_named_against_what_was_written(run):
    """Without .config.json the edit is still seen (by the sha256), though not what it was."""
    edit(run, train_lr=3)
    assert str(config_edits(run)) == "train.lr 1.0 -> 3.0"
    (run / ".config.json").unlink()
    edits = config_edits(run)
    assert edits is not None and not edits.changes and ".config.json" in str(edits)
    with pytest.raises(RnnkitError, match="which settings changed is not known"):
        check_edits(run, read_config(run), accept=False)
    assert check_edits(run, read_config(run), accept=True) == edits
    data = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**data, "sha256": 5}))  # a spoilt sha256 is an edit
    assert config_edits(run) is not None


def test_a_run_from_before_the_sha256_resumes_as_it_did(run):
    """Older runs (no sha256, no .config.json) cannot tell an edit: nothing is refused, and
    resuming gives them a sha256 (tests/training/test_old_runs.py resumes the real one)."""
    data = json.loads((run / "config.json").read_text())
    del data["sha256"]
    (run / "config.json").write_text(json.dumps(data))
    (run / ".config.json").unlink()
    config = read_config(run)
    assert config_edits(run) is None and settings_change(run, config) is None
    other = load_config(None, ["--train.lr=2", *TINY, "--train.epochs=1"])
    assert settings_change(run, other) == {"settings_changed": {"train.lr": [1.0, 2.0]}}
    write_config(run, config)
    assert config_edits(run) is None and json.loads((run / "config.json").read_text())["sha256"]


def test_taking_out_only_the_sha256_is_no_edit(run):
    data = json.loads((run / "config.json").read_text())
    del data["sha256"]
    (run / "config.json").write_text(json.dumps(data))
    assert config_edits(run) is None
    data["train"]["lr"] = 5
    (run / "config.json").write_text(json.dumps(data))
    assert str(config_edits(run)) == "train.lr 1.0 -> 5.0"  # .config.json still tells


def test_accept_edits_is_for_resume(tmp_path):
    proc = rnnkit("train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--accept-edits")
    assert_one_line_error(proc, "--accept-edits", "--resume")
