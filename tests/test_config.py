"""Configuration: defaults, TOML, dotted overrides, type and choice checks."""

from __future__ import annotations

import math

import pytest

from rnnkit import presets
from rnnkit.config import RunConfig, from_dict, load_config, to_dict
from rnnkit.errors import RnnkitError


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\ncell = "gru"\nhidden_size = 64\n[train]\nlr = 2\n')
    config = load_config(path, ["--train.lr=0.5", "--model.cutoffs=10,20", "--train.clip_norm=inf"])
    assert config.model.cell == "gru" and config.model.hidden_size == 64
    assert config.train.lr == 0.5 and isinstance(config.train.lr, float)
    assert config.model.cutoffs == [10, 20] and math.isinf(config.train.clip_norm)
    assert config.model.num_layers == RunConfig().model.num_layers
    assert from_dict(to_dict(config), "saved") == config


def test_file_ints_are_floats_where_floats_are_expected(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 20\n")
    assert load_config(path).train.lr == 20.0


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["--model.hiden_size=3"], "unknown setting 'model.hiden_size'"),
        (["--model.cell=transformer"], "must be one of"),
        (["--train.epochs=2.5"], "train.epochs must be int"),
        (["--train.epochs=true"], "train.epochs must be int"),
        (["--train.lr"], "expected --section.field=value"),
        (["--optim.lr=1"], "unknown setting"),
    ],
)
def test_bad_overrides_name_the_setting(overrides, match):
    with pytest.raises(RnnkitError, match=match):
        load_config(None, overrides)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model\n")
    with pytest.raises(RnnkitError, match=r"bad\.toml: not valid TOML"):
        load_config(path)
    with pytest.raises(RnnkitError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("preset", presets.names())
def test_every_preset_parses_builds_and_names_its_command(preset):
    from rnnkit.models.config import build_model
    from rnnkit.tasks.classification import build_classifier
    from rnnkit.tasks.tagging import build_tagger

    config = load_config(preset)
    if config.task == "tag":
        build_tagger(config.model, words=10_000, chars=100, tags=17)
    elif config.task == "classify":
        build_classifier(config.model, words=10_000, classes=config.data.classes)
    else:
        build_model(config.model, vocab_size=10_000)
    first = presets.read(preset).splitlines()[0]
    assert first.startswith("# rnnkit train --data"), "a preset is headed by the command that runs it"
    assert first.endswith(f"--config {preset}"), "the command names the preset by name (any directory)"


@pytest.mark.parametrize(
    ("task", "setting"),
    [
        ("lm", "--model.crf=true"),
        ("tag", "--model.pooling=max"),
        ("classify", "--model.tie_weights=true"),
        ("lm", "--model.char_embed=10"),
        ("tag", "--model.head=adaptive"),
    ],
)
def test_a_model_setting_of_another_task_is_refused_not_ignored(task, setting):
    from rnnkit.models.config import check_task_options

    config = load_config(None, [f"--task={task}", setting])
    with pytest.raises(RnnkitError, match=r"applies to task '\w+' only; this run's task is"):
        check_task_options(config.model, config.task)
