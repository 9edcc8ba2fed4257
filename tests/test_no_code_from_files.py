"""Checkpoints cannot run code: every file any command reads is JSON, TOML, text or
safetensors, and a pickle handed over in place of any of them is refused, unopened.

The pickle here would create a file if it were ever unpickled (``open(marker, "w")``);
each case checks for that file as well as for the one-line error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.cli.main import main

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


class _Trap:
    """Unpickling this creates ``path``: the proof that something unpickled it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pickle")
    (root / "lm").mkdir()
    lm_data = write_toy_lm_corpus(root / "lm", vocab=8, length=6, train=40, valid=10)
    tb = write_toy_treebank(root / "tb", train=20)
    assert main(["train", "--data", str(lm_data), "--out", str(root / "lm-run"), *TINY]) == 0
    assert main(["train", "--task=tag", "--data", str(tb), "--out", str(root / "tag-run"), *TINY]) == 0
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _plant(path: Path, marker: Path) -> None:
    """Replace ``path`` by the pickle; a checkpoint file also gets its record's sha256
    updated, so the loader's checksum cannot be what stops it."""
    data = pickle.dumps(_Trap(marker))
    path.write_bytes(data)
    record_path = path.parent / "checkpoint.json"
    if path.suffix == ".safetensors" and record_path.exists():
        record = json.loads(record_path.read_text())
        for key in ("weights", "state"):
            if record.get(key) == path.name:
                record[f"{key}_sha256"] = hashlib.sha256(data).hexdigest()
        record_path.write_text(json.dumps(record))


def _weights(run: Path, which: str = "best", key: str = "weights") -> Path:
    return run / which / json.loads((run / which / "checkpoint.json").read_text())[key]


# (run, the file to replace, the command; RUN and DATA stand for the copied run and the data)
CASES = [
    ("lm", lambda r: _weights(r), ["evaluate", "RUN"]),
    ("lm", lambda r: _weights(r), ["generate", "RUN", "--num", "1"]),
    ("lm", lambda r: _weights(r), ["score", "RUN", "DATA/valid.txt"]),
    ("lm", lambda r: _weights(r), ["next", "RUN", "w1 w2"]),
    ("lm", lambda r: _weights(r), ["diagnose", "RUN", "--text", "w1 w2 w3 w4", "--out", "RUN/d"]),
    ("lm", lambda r: _weights(r, "last"), ["train", "--resume", "RUN", "--no-progress"]),
    ("lm", lambda r: _weights(r, "last", "state"), ["train", "--resume", "RUN", "--no-progress"]),
    ("lm", lambda r: r / "vocab.json", ["evaluate", "RUN"]),
    ("lm", lambda r: r / "config.json", ["generate", "RUN"]),
    ("lm", lambda r: r / "best" / "checkpoint.json", ["score", "RUN", "DATA/valid.txt"]),
    ("lm", lambda r: r / "last" / "checkpoint.json", ["train", "--resume", "RUN", "--no-progress"]),
    ("lm", lambda r: r / "data.json", ["train", "--resume", "RUN", "--no-progress"]),
    ("tag", lambda r: _weights(r), ["predict", "RUN", "DATA/t-ud-test.conllu"]),
    ("tag", lambda r: _weights(r), ["evaluate", "RUN"]),
    ("tag", lambda r: r / "tagging.json", ["predict", "RUN", "DATA/t-ud-test.conllu"]),
    ("tag", lambda r: r / "tagging.json", ["evaluate", "RUN"]),
]


@pytest.mark.parametrize(
    ("kind", "target", "command"), CASES, ids=[f"{c[2][0]}-{i}" for i, c in enumerate(CASES)]
)
def test_a_pickle_in_a_run_is_refused_unopened(runs, tmp_path, capsys, kind, target, command):
    run = _copy(runs / f"{kind}-run", tmp_path / "run")
    data = runs / ("lm" if kind == "lm" else "tb")
    path = target(run)
    assert path.exists(), path
    marker = tmp_path / "unpickled"
    _plant(path, marker)
    capsys.readouterr()
    argv = [a.replace("RUN", str(run)).replace("DATA", str(data)) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    assert not marker.exists()


@pytest.mark.parametrize("flag", ["--config", "--train", "--data"])
def test_a_pickle_as_a_training_input_is_refused_unopened(runs, tmp_path, capsys, flag):
    marker = tmp_path / "unpickled"
    bad = tmp_path / "input"
    bad.mkdir()
    (bad / "train.txt").write_bytes(pickle.dumps(_Trap(marker)))
    (bad / "valid.txt").write_bytes(pickle.dumps(_Trap(marker)))
    argv = ["train", "--out", str(tmp_path / "run"), *TINY]
    if flag == "--config":
        argv += ["--data", str(runs / "lm"), "--config", str(bad / "train.txt")]
    elif flag == "--train":
        argv += ["--train", str(bad / "train.txt"), "--valid", str(bad / "valid.txt")]
    else:
        argv += ["--data", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ("not UTF-8" in err or "not valid TOML" in err), err
    assert not marker.exists()


def test_a_pickle_file_as_a_run_is_not_a_run(tmp_path, capsys):
    marker = tmp_path / "unpickled"
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps(_Trap(marker)))
    for verb in ("evaluate", "generate", "predict"):
        argv = [verb, str(model)] + (["x.txt"] if verb == "predict" else [])
        assert main(argv) == 2
        assert "error:" in capsys.readouterr().err
    assert not marker.exists()


UNPICKLERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("torch", "load"),
    ("dill", "load"),
    ("joblib", "load"),
    ("marshal", "loads"),
}


def test_no_source_file_can_unpickle():
    """No module imports pickle-like loaders or calls torch.load / numpy.load(allow_pickle=True)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) else []
                )
                if any(
                    n and n.split(".")[0] in ("pickle", "dill", "joblib", "marshal", "shelve") for n in names
                ):
                    found.append(f"{path.name}:{node.lineno} imports {names}")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in UNPICKLERS
            ):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "weights_only"):
                found.append(f"{path.name}:{node.value.lineno} {node.arg}=")
    assert len(list(SRC.rglob("*.py"))) > 30
    assert not found, found
