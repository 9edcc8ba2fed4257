"""One training state (issue 17): ``TrainState.capture()`` is exactly what ``last/`` saves and
``restore()`` puts it back; the names it saves are those runs made before it existed saved,
so that their run directories still resume; the loop is short functions over that state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import rnnkit.training.loop as loop
from conftest import write_toy_lm_corpus
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.training.checkpoint import load_state
from rnnkit.training.state import TrainState

TINY = ["--model.cell=lstm", "--model.hidden_size=4", "--model.embed_size=4", "--train.batch_size=4"]
TINY += ["--train.bptt=6", "--train.threads=1", "--train.checkpoint_every=7", "--train.eval_every=5"]
TINY += ["--train.on_nonfinite=reduce"]
RUNS = {  # NT-ASGD starts averaging after epoch 2 here; Adam keeps tensors and a step per parameter
    "ntasgd": [*TINY, "--train.optimizer=ntasgd", "--train.nonmono=1", "--train.epochs=4", "--train.lr=30"],
    "adam": [*TINY, "--model.cell=gru", "--train.optimizer=adam", "--train.lr=0.01", "--train.epochs=1"],
}
RUNS["ntasgd"] += ["--model.dropout=0.3"]

# Recorded from these runs with the code before TrainState (commit d34411e, whose _fit built
# the record by hand): the key paths of every last/ record (into nested objects but not into
# the optimizer's, whose keys are torch's) and the names of its state tensors.
RECORD = {"step", "metrics_bytes", "rnnkit", "seconds", "sessions", "world_size", "resume"}
RECORD |= {f"resume.{k}" for k in ("average", "cursor", "hidden", "history", "optimizer", "rng")}
RECORD |= {"resume.rollback", "resume.threads", "resume.average.active", "resume.average.count"}
RECORD |= {f"resume.cursor.{k}" for k in ("bad", "count", "epoch", "nll", "position", "recent")}
RECORD |= {f"resume.history.{k}" for k in ("best_epoch", "checks", "lr", "lr_factor", "since_best")}
RECORD |= {"resume.history.step", "resume.history.valid_loss", "resume.rng.numpy", "resume.rng.python"}
EPOCH_END = {"epoch", "valid", "valid.bits", "valid.loss", "valid.ppl", "valid.tokens"}
PARAMS = range(11)  # the tiny 2-layer models' parameters
RNG = {"rng.torch", "rng.windows"}
WEIGHTS_BEFORE = {f"rollback.w.{i}" for i in PARAMS}
AVERAGE = {f"average.{i}" for i in PARAMS}
LSTM_STATE = {"hidden.h", "hidden.c"}
ADAM = {
    f"{what}.{i}.{k}"
    for what in ("optim", "rollback.o")
    for i in PARAMS
    for k in ("exp_avg", "exp_avg_sq", "step")
}
SAVED = {  # (record keys, tensor names) of each kind of save: epoch ends and within epochs
    "ntasgd": [
        (RECORD | EPOCH_END, RNG | WEIGHTS_BEFORE | AVERAGE),
        (RECORD | EPOCH_END, RNG | WEIGHTS_BEFORE),
        (RECORD, RNG | WEIGHTS_BEFORE | AVERAGE | LSTM_STATE),
        (RECORD, RNG | WEIGHTS_BEFORE | LSTM_STATE),
    ],
    "adam": [
        (RECORD | EPOCH_END, RNG | WEIGHTS_BEFORE | ADAM),
        (RECORD, RNG | WEIGHTS_BEFORE | ADAM | {"hidden.h"}),
    ],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_corpus(locate(write_toy_lm_corpus(tmp_path_factory.mktemp("state"))))


def _paths(record: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in record.items():
        out.add(prefix + key)
        if isinstance(value, dict) and key != "optimizer":
            out |= _paths(value, f"{prefix}{key}.")
    return out


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_last_saves_the_names_it_always_saved(corpus, tmp_path, kind, monkeypatch):
    saved, optimizer_keys = set(), set()
    original = loop.save_checkpoint

    def recording(directory, model, record, step, extra=None):
        if Path(directory).name == "last":
            saved.add((frozenset(_paths(record)), frozenset(extra)))
            optimizer_keys.update(record["resume"]["optimizer"])
        return original(directory, model, record, step, extra=extra)

    monkeypatch.setattr(loop, "save_checkpoint", recording)
    loop.fit(load_config(None, RUNS[kind]), corpus, tmp_path / "run", progress=False)
    assert saved == {(frozenset(r), frozenset(t)) for r, t in SAVED[kind]}
    assert optimizer_keys == {"param_groups", "scalars"}


def test_restore_then_capture_gives_back_what_last_holds(corpus, tmp_path):
    """A fresh state restored from last/ captures the same record and tensors (the sessions
    one more: capturing is a new session's)."""
    config = load_config(None, [*RUNS["adam"], "--train.checkpoint_every=0", "--train.epochs=2"])
    loop.fit(config, corpus, tmp_path / "run", progress=False)
    record, tensors = load_state(tmp_path / "run" / "last")
    task = loop.make_task(config, corpus, torch.device("cpu"))
    state = TrainState.create(task.model, loop.make_optimizer(task.model, config), 123, rollback=True)
    state.restore(record, tensors)
    again, again_tensors = state.capture(0.0, record["metrics_bytes"], {"epoch": 2, "valid": record["valid"]})
    assert again.keys() == {k for k in record if not k.startswith(("weights", "state"))}
    assert again["resume"] == record["resume"]
    assert again["seconds"] == record["seconds"] and again["sessions"] == record["sessions"] + 1
    assert again_tensors.keys() == tensors.keys()
    assert all(torch.equal(again_tensors[k], tensors[k]) for k in tensors)
    assert state.history.step == record["step"] and state.cursor.epoch == 3


TRAINING = Path(loop.__file__).parent


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_training_is_short_functions():
    long = [
        f"{path.name}:{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for path in sorted(TRAINING.glob("*.py"))
        for f in _functions(path)
        if f.end_lineno - f.lineno + 1 > 60
    ]
    assert long == []


def test_the_loop_has_no_closures_and_short_argument_lists():
    functions = _functions(TRAINING / "loop.py")
    nested = [inner.name for f in functions for inner in _functions_in(f)]
    assert nested == []
    arguments = {f.name: len(f.args.args) for f in functions}
    assert {name: arguments[name] for name in ("run_epoch", "validate", "save_last")} == {
        "run_epoch": 3,
        "validate": 4,
        "save_last": 3,
    }
    guard = {f.name: len(f.args.args) for f in _functions(TRAINING / "guard.py")}["guard"]
    assert guard <= 6
    docstring = ast.get_docstring(ast.parse((TRAINING / "loop.py").read_text(encoding="utf-8")))
    assert docstring is not None and "Short and flat" not in docstring


def _functions_in(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    return [
        n
        for statement in function.body
        for n in ast.walk(statement)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    ]
