"""Issue 18 item 1: every numeric setting is checked against the range declared with it."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import typing

import pytest

from rnnkit import presets
from rnnkit.config import (
    CHOICES,
    MAX_RECURRENT_PARAMETERS,
    RANGES,
    RunConfig,
    describe,
    load_config,
    recurrent_parameters,
    settings,
    to_dict,
)
from rnnkit.errors import RnnkitError

HINTS = {
    name: typing.get_type_hints(type(getattr(RunConfig(), name.partition(".")[0])))[name.partition(".")[2]]
    for name, _ in settings()
    if "." in name
}


def _kinds(name: str) -> set:
    hint = HINTS.get(name, str)
    args = typing.get_args(hint) or (hint,)
    return {typing.get_origin(a) or a for a in args}


NUMERIC = [
    name
    for name in HINTS
    if _kinds(name) & {int, float, list} and bool not in _kinds(name) and name not in CHOICES
]
FLOATS = [name for name in NUMERIC if float in _kinds(name)]


def _default(name: str):
    section, _, key = name.partition(".")
    return to_dict(RunConfig())[section][key]


def _outside(name: str) -> list:
    """Values just outside ``name``'s range (an int setting gets ints)."""
    r = RANGES[name]
    whole = float not in _kinds(name)
    values = []
    if r.low is not None:
        values.append(r.low if r.low_open else r.low - 1 if whole else math.nextafter(r.low, -math.inf))
    if r.high is not None and not math.isinf(r.high):
        values.append(r.high if r.high_open else r.high + 1 if whole else math.nextafter(r.high, math.inf))
    return [int(v) if whole else float(v) for v in values if v not in r.also]


def _override(name: str, value) -> str:
    return f"--{name}={value}"


def test_every_numeric_setting_declares_a_range_or_is_any_finite_number():
    unranged = sorted(set(NUMERIC) - set(RANGES))
    assert unranged == ["model.forget_bias", "model.scale"], "both: any finite real (a bias, a multiple of I)"


@pytest.mark.parametrize("name", sorted(RANGES))
def test_the_default_is_inside_and_just_outside_is_refused_in_one_line(name):
    default = _default(name)
    for value in default if isinstance(default, list) else [default]:
        if value is not None:
            assert value in RANGES[name], f"{name}'s default {value} is outside {RANGES[name]}"
    outside = _outside(name)
    assert outside, f"{name}: a range with nothing outside it"
    for value in outside:
        with pytest.raises(RnnkitError) as err:
            load_config(None, [_override(name, value)])
        message = str(err.value)
        assert "\n" not in message and name in message and str(RANGES[name]) in message, message
        assert message.startswith(f"override '--{name}="), message


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_unless_the_doc_gives_inf_a_meaning(name, bad, tmp_path):
    if name == "train.clip_norm" and bad == "inf":
        assert math.isinf(load_config(None, ["--train.clip_norm=inf"]).train.clip_norm)
        return
    with pytest.raises(RnnkitError, match=name.replace(".", r"\.")) as err:
        load_config(None, [_override(name, bad)])
    assert "\n" not in str(err.value)
    section, _, key = name.partition(".")
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {bad}\n")  # TOML has nan and inf literals
    with pytest.raises(RnnkitError, match=rf"c\.toml: {name.replace('.', '[.]')} must be") as err:
        load_config(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("--train.bptt=0", r"train\.bptt must be at least 1, got 0"),
        ("--train.lr=-1", r"train\.lr must be above 0, got -1"),
        ("--train.threads=-1", r"train\.threads must be in \[0, 2147483647\], got -1"),
        ("--model.hidden_size=2147483648", r"model\.hidden_size = 2147483648"),
        ("--train.loss_spike=1", r"train\.loss_spike must be 0, or above 1"),
        ("--model.cutoffs=2000,0", r"model\.cutoffs must be each at least 1, got 0"),
        ("--model.dropout=1", r"model\.dropout must be in \[0, 1\), got 1"),
    ],
)
def test_the_issue_cases_are_one_line_naming_the_setting(override, match):
    with pytest.raises(RnnkitError, match=match) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_none_and_special_values_stay_allowed():
    config = load_config(
        None,
        ["--model.input_dropout=none", "--train.patience=none", "--train.loss_spike=0", "--train.threads=0"],
    )
    assert config.model.input_dropout is None and config.train.patience is None
    assert config.train.loss_spike == 0 and config.train.threads == 0


def test_a_model_too_big_for_memory_is_refused_with_its_parameter_count(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("[model]\nhidden_size = 2147483648\n")
    with pytest.raises(RnnkitError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    count = recurrent_parameters(dataclasses.replace(RunConfig().model, hidden_size=2147483648))
    assert f"{count:,} parameters" in message and f"{4 * count:,} bytes" in message
    assert count > MAX_RECURRENT_PARAMETERS


def test_the_parameter_estimate_matches_the_built_model():
    torch = pytest.importorskip("torch")
    from rnnkit.models.config import build_encoder

    for cell in ("elman", "gru", "lstm", "lnlstm", "mingru", "minlstm", "slstm"):
        config = load_config(
            None, [f"--model.cell={cell}", "--model.bidirectional=true", "--model.num_layers=3"]
        )
        built = sum(p.numel() for p in build_encoder(config.model, config.model.embed_size).parameters())
        estimate = recurrent_parameters(config.model)
        assert abs(estimate - built) <= 0.01 * built, (cell, estimate, built)
    del torch


@pytest.mark.parametrize("preset", presets.names())
def test_every_preset_is_within_every_range(preset):
    config = load_config(preset)
    assert recurrent_parameters(config.model, config.task) <= MAX_RECURRENT_PARAMETERS


def test_config_lists_each_range():
    rows = {row["name"]: row for row in describe()}
    assert rows["train.bptt"]["range"] == "at least 1" and rows["train.lr"]["range"] == "above 0"
    assert (
        rows["model.dropout"]["range"] == "in [0, 1)"
        and rows["train.clip_norm"]["range"] == "above 0 (inf allowed)"
    )
    assert rows["model.cell"]["range"] is None
    assert set(name for name, row in rows.items() if row["range"]) == set(RANGES)
    json.dumps(rows, allow_nan=False)


@pytest.mark.parametrize(
    "override", ["--train.bptt=0", "--train.lr=-1", "--train.threads=-1", "--model.hidden_size=2147483648"]
)
def test_the_console_script_refuses_in_one_line(override, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("the cat sat on the mat\n" * 20)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnkit",
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            override,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert override.partition("=")[0].removeprefix("--") in lines[0]
    assert not (tmp_path / "run").exists()
