"""Things in their rooms (issue 17, item 4): each experiment its own module, one function per
diagnostic, the command line built verb by verb, one chunk-tag parser."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import rnnkit
from rnnkit import names

SRC = Path(rnnkit.__file__).parent


def _functions(path: Path) -> dict[str, int]:
    """Every function defined in ``path`` (nested ones too): its length in lines."""
    tree = ast.parse(path.read_text())
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def test_each_experiment_is_its_own_module_and_the_package_only_registers_and_runs():
    from rnnkit import experiments

    assert tuple(experiments.EXPERIMENTS) == names.EXPERIMENTS
    for name, module in experiments.EXPERIMENTS.items():
        assert module.__name__ != experiments.__name__
        assert callable(module.experiment) and callable(module.draw)
        takes = inspect.signature(module.experiment).parameters
        assert list(takes)[:3] == ["seed", "scale", "device"]
        for choice in list(takes)[3:]:  # the --cells/--lengths choices: keyword-only, None unless given
            assert choice in ("cells", "lengths") and takes[choice].kind is inspect.Parameter.KEYWORD_ONLY
            assert takes[choice].default is None
        assert list(inspect.signature(module.draw).parameters) == ["out", "results", "caption"]
        assert experiments.FILES[name] == module.FILES and module.FILES
    assert set(_functions(SRC / "experiments" / "__init__.py")) == {"run_experiment"}


def test_diagnose_has_one_function_per_diagnostic_and_no_long_function():
    from rnnkit.cli import diagnose

    assert tuple(diagnose.MEASURES) == diagnose.DIAGNOSTICS
    assert len(set(diagnose.MEASURES.values())) == len(diagnose.DIAGNOSTICS)
    lengths = _functions(SRC / "cli" / "diagnose.py")
    assert lengths["diagnose"] <= 30, lengths["diagnose"]
    assert max(lengths.values()) <= 60, max(lengths.items(), key=lambda item: item[1])


def test_the_parser_is_built_verb_by_verb():
    from rnnkit.cli import main

    verbs = next(a for a in main.build_parser()._actions if a.dest == "command").choices
    assert len(main.VERBS) == len(verbs)  # one function per verb, each adding exactly one
    lengths = _functions(SRC / "cli" / "main.py")
    assert lengths["build_parser"] <= 20
    assert all(lengths[f.__name__] <= 45 for f in main.VERBS), {
        f.__name__: lengths[f.__name__] for f in main.VERBS
    }


@pytest.mark.parametrize(
    "tag, prefixes, expected",
    [
        ("O", "BI", ("O", "")),
        ("B-PER", "BI", ("B", "PER")),
        ("I-MISC-X", "BI", ("I", "MISC-X")),
        ("S-LOC", "BIES", ("S", "LOC")),
        ("S-LOC", "BI", None),
        ("B-", "BI", None),
        ("-PER", "BI", None),
        ("BI-PER", "BIES", None),
        ("PER", "BIES", None),
        ("", "BI", None),
        (None, "BI", None),
    ],
)
def test_one_chunk_tag_parser(tag, prefixes, expected):
    from rnnkit.data.conll import split_chunk_tag
    from rnnkit.tasks import tagging_metrics

    assert split_chunk_tag(tag, prefixes) == expected
    assert tagging_metrics.split_chunk_tag is split_chunk_tag
