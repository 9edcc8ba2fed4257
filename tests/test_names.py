"""One source of truth for each list of names (issue 17, item 4): ``rnnkit.names``, torch-free.

Every runtime registry or check holds exactly its list, in its order, and the settings'
allowed values and the command line's choices are the same lists.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnkit import config, names
from rnnkit.cells import elman
from rnnkit.errors import RnnkitError


def test_each_runtime_registry_holds_exactly_its_list():
    from rnnkit import experiments, registry, tasks
    from rnnkit.data import text
    from rnnkit.models import classifier

    assert tuple(registry.CELLS) == names.CELLS
    assert tuple(elman.ACTIVATIONS) == names.NONLINEARITIES
    assert tuple(elman.DERIVATIVES) == names.NONLINEARITIES
    assert classifier.POOLINGS == names.POOLINGS
    assert text.LEVELS == names.LEVELS
    assert tuple(tasks.TASKS) == names.TASKS
    assert tuple(experiments.EXPERIMENTS) == names.EXPERIMENTS
    assert experiments.SCALES == names.SCALES


def test_the_settings_allow_exactly_the_lists():
    assert config.CHOICES["model.cell"] == names.CELLS
    assert config.CHOICES["model.nonlinearity"] == names.NONLINEARITIES
    assert config.CHOICES["model.forget"] == names.FORGET_GATES
    assert config.CHOICES["model.candidate"] == names.CANDIDATES
    assert config.CHOICES["model.pooling"] == names.POOLINGS
    assert config.CHOICES["data.level"] == names.LEVELS
    assert config.CHOICES["task"] == names.TASKS


def test_the_command_line_offers_exactly_the_lists():
    from rnnkit.cli.main import build_parser

    verbs = next(a for a in build_parser()._actions if a.dest == "command").choices
    experiment = {a.dest: a for a in verbs["experiment"]._actions}
    assert tuple(experiment["name"].choices) == names.EXPERIMENTS
    assert tuple(experiment["scale"].choices) == names.SCALES
    fresh = {a.dest: a for a in verbs["diagnose"]._actions}
    assert tuple(fresh["cell"].choices) == names.CELLS
    assert tuple(fresh["nonlinearity"].choices) == names.NONLINEARITIES


def test_diagnose_names_every_cell_for_its_titles():
    from rnnkit.cli.diagnose import CELL_NAMES

    assert tuple(CELL_NAMES) == names.CELLS


def test_each_check_refuses_a_name_off_its_list():
    from rnnkit import registry
    from rnnkit.data.text import Codec
    from rnnkit.models.classifier import Classifier

    with pytest.raises(RnnkitError, match="cell must be one of"):
        registry.rnn("rnn", 2, 3)
    with pytest.raises(RnnkitError, match="nonlinearity must be one of"):
        elman.ElmanCell(2, 3, nonlinearity="gelu")
    with pytest.raises(RnnkitError, match=r"model\.pooling must be one of"):
        Classifier(5, 2, registry.rnn("gru", 2, 3), 2, pooling="sum")
    with pytest.raises(RnnkitError, match="level must be one of"):
        Codec("byte")


def test_the_lists_import_without_torch():
    code = "import sys, rnnkit.names, rnnkit.config; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
