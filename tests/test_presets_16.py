"""Issue 16, items 12 and 13: presets ship with the package and resolve by name from any
directory; ``rnnkit presets`` and ``rnnkit config`` list them and every setting from their
one source (the presets' headers, the config dataclasses' fields)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus
from rnnkit import presets
from rnnkit.cli import settings
from rnnkit.config import CHOICES, SECTIONS, RunConfig, load_config
from rnnkit.errors import RnnkitError

ROOT = Path(__file__).resolve().parents[1]
ALL_SETTINGS = ["task"] + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def rnnkit_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real console script, run from ``cwd`` (not the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_a_preset_resolves_by_name_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config("zaremba-small", ["--train.epochs=2"])
    assert (config.model.hidden_size, config.train.bptt, config.train.lr) == (200, 20, 20.0)
    assert config.train.epochs == 2


def test_train_takes_a_preset_by_name_from_another_directory(tmp_path):
    (tmp_path / "corpus").mkdir()
    write_toy_lm_corpus(tmp_path / "corpus")
    tiny = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
    done = rnnkit_cli(
        "train", "--data", "corpus", "--out", "run", "--config", "zaremba-small", *tiny, "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["bptt"] == 20 and saved["train"]["schedule"] == "zaremba"  # the preset's
    assert saved["model"]["hidden_size"] == 8  # the override's


def test_an_unknown_preset_is_one_line_naming_every_preset(tmp_path):
    done = rnnkit_cli("train", "--data", "x", "--out", "run", "--config", "zaremba-smal", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no such preset" in lines[0] and all(name in lines[0] for name in presets.names())


def test_a_file_that_exists_wins_over_a_preset_of_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("zaremba-small").write_text("[model]\nhidden_size = 7\n")
    assert load_config("zaremba-small").model.hidden_size == 7
    assert load_config("./zaremba-small").model.hidden_size == 7
    Path("lecture").mkdir()  # a folder of a preset's name (a run directory, say) does not hide it
    assert load_config("lecture").model.cell == "elman"


def test_an_old_configs_path_names_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        RnnkitError, match=r"no such config file \(the preset of that name is --config lecture"
    ):
        load_config("configs/lecture.toml")


def test_the_wheel_ships_every_preset(tmp_path):
    """``pip wheel`` of a copy of the source (the build writes beside its sources)."""
    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        "dist",
        ".",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("rnnkit-*.whl")
    shipped = {Path(n).name for n in zipfile.ZipFile(wheel).namelist() if n.startswith("rnnkit/presets/")}
    assert {f"{name}.toml" for name in presets.names()} <= shipped
    assert len(presets.names()) == len(list((ROOT / "src/rnnkit/presets").glob("*.toml"))) >= 14


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_header_says_what_reached_and_time(name):
    lines = presets.read(name).splitlines()
    assert lines[0].startswith("# rnnkit train --data ")
    assert lines[0].endswith(f" --out runs/{name} --config {name}"), "runs from any directory"
    assert [line.split(":")[0] for line in lines[1:4]] == ["# what", "# reached", "# time"]
    assert lines[4] == "#", "the header ends with a bare '#' line before the prose"


def test_the_presets_listing_is_generated_from_every_header(capsys):
    assert settings.presets(argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out.splitlines()
    for name in presets.names():
        (line,) = [row for row in out if row.split(" ")[0] == name]
        for label in ("what", "reached", "time"):  # read here from the file itself
            text = next(x for x in presets.read(name).splitlines() if x.startswith(f"# {label}: "))
            assert text.removeprefix(f"# {label}: ") in line
    assert settings.presets(argparse.Namespace(json=True)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == presets.names()
    assert all(row["command"].endswith(f"--config {row['name']}") for row in rows)


def test_a_header_without_its_lines_is_refused(tmp_path, monkeypatch):
    (tmp_path / "bare.toml").write_text(
        "# rnnkit train --data ptb --out runs/bare --config bare\n#\ntask = 'lm'\n"
    )
    monkeypatch.setattr(presets, "folder", lambda: tmp_path)
    with pytest.raises(RnnkitError, match="preset bare: its header lacks what, reached, time"):
        presets.header("bare")


def test_config_lists_every_dataclass_field_with_type_default_and_doc(capsys):
    assert settings.show_config(argparse.Namespace(preset=None, json=True)) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in listing["settings"]}
    assert list(rows) == ALL_SETTINGS
    defaults = dataclasses.asdict(RunConfig())
    for name, row in rows.items():
        section, _, key = name.rpartition(".")
        assert row["default"] == row["value"] == (defaults[section][key] if section else defaults[key])
        assert row["doc"] and "\n" not in row["doc"] and row["type"]
        assert row["choices"] == (list(CHOICES[name]) if name in CHOICES else None)
    assert rows["model.input_dropout"]["type"] == "float or none"
    assert rows["model.cutoffs"]["type"] == "list of int"
    assert set(CHOICES) >= {"task", "model.cell", "train.optimizer", "data.level"}

    assert settings.show_config(argparse.Namespace(preset=None, json=False)) == 0
    text = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in text[1 : 1 + len(ALL_SETTINGS)]] == ALL_SETTINGS
    cell = next(line for line in text if line.startswith("model.cell "))
    assert "elman|irnn|gru|lstm" in cell and "lstm" in cell.split()[1]


def test_config_of_a_preset_shows_and_marks_its_values(capsys):
    assert settings.show_config(argparse.Namespace(preset="zaremba-small", json=False)) == 0
    text = capsys.readouterr().out.splitlines()
    assert next(line for line in text if line.startswith("train.bptt ")).split()[1] == "20*"
    assert next(line for line in text if line.startswith("train.seed ")).split()[1] == "0"
    assert settings.show_config(argparse.Namespace(preset="zaremba-small", json=True)) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["train.bptt"]["value"] == 20 and rows["train.bptt"]["default"] == 35


def test_config_json_is_strict_json_with_infinities(tmp_path, capsys):
    path = tmp_path / "inf.toml"
    path.write_text("[train]\nclip_norm = inf\n")
    assert settings.show_config(argparse.Namespace(preset=str(path), json=True)) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out, parse_constant=refuse)["settings"]}
    assert rows["train.clip_norm"]["value"] == "inf"


def test_a_misspelt_setting_points_to_rnnkit_config():
    with pytest.raises(RnnkitError) as error:
        load_config(None, ["--model.hiden_size=3"])
    message = str(error.value)
    assert "did you mean model.hidden_size?" in message and "'rnnkit config' lists every setting" in message
    assert "\n" not in message and len(message) < 200  # no longer the list of all 80 settings


def test_the_settings_commands_import_no_torch():
    probe = "import sys, rnnkit.cli.settings, rnnkit.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0


def test_presets_and_config_through_the_console_script(tmp_path):
    """The commands as a user types them, from a directory that is not the checkout."""
    if "presets" not in rnnkit_cli("--help", cwd=tmp_path).stdout:
        pytest.skip("'presets' and 'config' are not wired into cli/main.py yet")
    done = rnnkit_cli("presets", cwd=tmp_path)
    assert done.returncode == 0 and all(f"\n{name} " in f"\n{done.stdout}" for name in presets.names())
    done = rnnkit_cli("config", "zaremba-small", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)["settings"]] == ALL_SETTINGS
    done = rnnkit_cli("config", "zaremba-smal", cwd=tmp_path)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "rnnkit config" in rnnkit_cli("train", "--help", cwd=tmp_path).stdout
