"""Numerical faults injected into a real training run: NaN/Inf in the inputs, in one
weight's gradient, in the weights, and a learning rate that explodes the loss. The guard
(train.on_nonfinite) skips, reduces or stops as configured, logs the step and says where
it went wrong; no skipped step changes the weights."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rnnkit.training.loop as loop
from conftest import write_toy_lm_corpus
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.errors import RnnkitError

BASE = ["--model.cell=lstm", "--model.hidden_size=8", "--model.embed_size=8", "--model.num_layers=2"]
BASE += ["--train.epochs=1", "--train.batch_size=4", "--train.bptt=5", "--train.log_every=1000"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_corpus(locate(write_toy_lm_corpus(tmp_path_factory.mktemp("faults"), train=40)))


def _train(corpus, run, settings, inject):
    """fit() with ``inject(model, calls)`` run on the task's model before training."""
    original = loop.make_task

    def make_task(*args, **kwargs):
        task = original(*args, **kwargs)
        inject(task.model)
        return task

    loop.make_task = make_task
    try:
        return loop.fit(load_config(None, [*BASE, *settings]), corpus, run, progress=False)
    finally:
        loop.make_task = original


def _faults(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "nonfinite" in r]


def _at_step(k: int, change):
    """A forward pre-hook on the RNN: at training step k, ``change`` rewrites its input.
    The fault sits in that batch's data, so it is there again (call k + 1) when the guard
    re-runs the batch to locate it."""
    calls = {"n": 0}

    def hook(module, args):
        if module.training:
            calls["n"] += 1
            if calls["n"] in (k, k + 1):
                return change(args)
        return None

    return hook


def test_nan_in_the_inputs_is_skipped_and_located(corpus, tmp_path):
    def poison(args):
        x = args[0].clone()
        x[3, 1, 0] = math.nan  # time step 3 of sequence 1
        return (x, *args[1:])

    run = tmp_path / "run"
    summary = _train(corpus, run, [], lambda m: m.rnn.register_forward_pre_hook(_at_step(4, poison)))
    (fault,) = _faults(run)
    assert fault["step"] == 4 and fault["nonfinite"]["action"] == "skip"
    assert "first non-finite output: rnn at time step 3" in fault["nonfinite"]["where"]
    assert math.isfinite(summary["best_valid"]["loss"])


def test_nan_in_one_gradient_is_skipped_and_named(corpus, tmp_path):
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * math.inf if calls["n"] == 2 else grad

    run = tmp_path / "run"
    _train(corpus, run, [], lambda m: m.rnn.weight_hh_l1.register_hook(hook))
    (fault,) = _faults(run)
    assert fault["step"] == 2
    assert fault["nonfinite"]["where"].startswith("non-finite gradient in rnn.weight_hh_l1")
    assert "first non-finite output" not in fault["nonfinite"]["where"]  # the forward pass was sound


def test_a_skipped_step_leaves_every_weight_as_it_was(corpus, tmp_path):
    """Skipping = no update at all: the optimizer state too (Adam's moments)."""
    seen = {}

    def hook(grad):
        return grad * math.nan

    def inject(model):
        model.rnn.weight_hh_l0.register_hook(hook)
        seen["model"] = model

    run = tmp_path / "run"
    settings = ["--train.optimizer=adam", "--train.lr=0.01", "--train.max_bad_steps=1000"]
    start = {}
    original = loop.make_optimizer

    def make_optimizer(model, config):
        start.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return original(model, config)

    loop.make_optimizer = make_optimizer
    try:
        _train(corpus, run, settings, inject)
    finally:
        loop.make_optimizer = original
    assert len(_faults(run)) > 5 and all(f["nonfinite"]["action"] == "skip" for f in _faults(run))
    for name, value in seen["model"].state_dict().items():
        assert torch.equal(value, start[name]), name  # every step was skipped: nothing moved


def test_nan_in_the_weights_stops_at_once_naming_them(corpus, tmp_path):
    def poison(module, args):
        if module.training:
            with torch.no_grad():
                module.weight_hh_l1[0, 0] = math.nan

    run = tmp_path / "run"
    with pytest.raises(RnnkitError, match=r"step 1: loss nan.*the weights rnn.weight_hh_l1 are not finite"):
        _train(
            corpus, run, ["--train.on_nonfinite=reduce"], lambda m: m.rnn.register_forward_pre_hook(poison)
        )
    assert _faults(run)[0]["nonfinite"]["action"] == "stop"


EXPLODE = ["--train.clip_norm=inf", "--train.lr=1e4", "--train.loss_spike=3", "--train.nonfinite_factor=0.1"]
EXPLODE += ["--train.max_bad_steps=8", "--train.epochs=2"]


@pytest.mark.parametrize("mode", ["skip", "reduce", "stop"])
def test_an_exploding_learning_rate(corpus, tmp_path, mode):
    """SGD at lr 1e4 without clipping: step 1's update sends step 2's loss from ~2.5 to
    ~1900 (finite: a spike, train.loss_spike). "stop" stops there; "skip" skips, but the
    weights stay where the update sent them, so the spikes go on until max_bad_steps;
    "reduce" undoes the update each time and cuts the rate until training recovers."""
    run = tmp_path / "run"
    settings = [*EXPLODE, f"--train.on_nonfinite={mode}"]
    if mode == "reduce":
        summary = _train(corpus, run, settings, lambda m: None)
        faults = _faults(run)
        assert faults[0]["step"] == 2 and faults[0]["nonfinite"]["loss"] > 100
        assert 1 <= len(faults) <= 6 and all(f["nonfinite"]["action"] == "reduce" for f in faults)
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["lr"] for e in epochs if "epoch" in e][-1] == pytest.approx(1e4 * 0.1 ** len(faults))
        assert summary["best_valid"]["loss"] < 1.2 * math.log(12)  # recovered: ~uniform or better
        return
    with pytest.raises(RnnkitError) as err:
        _train(corpus, run, settings, lambda m: None)
    faults, message = _faults(run), str(err.value)
    assert message.startswith(f"step {faults[-1]['step']}: loss") and "a spike" in message
    if mode == "stop":
        assert [f["step"] for f in faults] == [2] and "train.on_nonfinite = 'stop'" in message
    else:
        assert [f["nonfinite"]["action"] for f in faults] == ["skip"] * 7 + ["stop"]
        assert "8 such steps in a row" in message


def test_clip_norm_zero_is_refused(corpus, tmp_path):
    with pytest.raises(RnnkitError, match=r"train\.clip_norm must be above 0"):
        _train(corpus, tmp_path / "run", ["--train.clip_norm=0"], lambda m: None)


def test_reduce_cuts_the_rate_and_the_run_recovers(corpus, tmp_path):
    """Inf injected into the loss path at two steps; reduce halves the lr each time and the
    cut is kept over the next epoch's schedule."""
    calls = {"n": 0}

    def hook(module, args):
        if module.training:
            calls["n"] += 1
            if calls["n"] in (3, 5):
                return (args[0] * math.inf, *args[1:])
        return None

    run = tmp_path / "run"
    settings = [
        "--train.on_nonfinite=reduce",
        "--train.epochs=2",
        "--train.lr=1",
        "--train.nonfinite_factor=0.25",
    ]
    summary = _train(corpus, run, settings, lambda m: m.rnn.register_forward_pre_hook(hook))
    assert [f["nonfinite"]["action"] for f in _faults(run)] == ["reduce", "reduce"]
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [e["lr"] for e in epochs if "epoch" in e]
    assert lrs == [1 / 16, 1 / 16]
    assert math.isfinite(summary["best_valid"]["loss"])


def test_reduce_resumes_exactly_with_a_bad_step_first(corpus, tmp_path):
    """The update the guard would undo is part of the checkpoint: killed just after step 6's
    checkpoint and resumed into a bad step 7, the run ends as the uninterrupted one."""
    settings = ["--train.on_nonfinite=reduce", "--train.checkpoint_every=3", "--model.dropout=0.2"]

    def poison_at(calls_to_poison, interrupt_at=None):
        calls = {"n": 0}

        def hook(module, args):
            if not module.training:
                return None
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            if calls["n"] in calls_to_poison:
                return (args[0] * math.inf, *args[1:])
            return None

        return lambda m: m.rnn.register_forward_pre_hook(hook)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _train(corpus, whole, settings, poison_at({7, 8}))  # step 7 and the guard's re-run of it
    with pytest.raises(KeyboardInterrupt):
        _train(corpus, killed, settings, poison_at(set(), interrupt_at=7))
    original = loop.make_task

    def make_task(*args, **kwargs):
        task = original(*args, **kwargs)
        poison_at({1, 2})(task.model)
        return task

    loop.make_task = make_task
    try:
        config = load_config(None, [*BASE, *settings])
        loop.fit(config, corpus, killed, progress=False, resume=True)
    finally:
        loop.make_task = original
    from conftest import last_weights

    a, b = last_weights(whole), last_weights(killed)
    assert [f["step"] for f in _faults(whole)] == [7] == [f["step"] for f in _faults(killed)]
    assert all(torch.equal(a[k], b[k]) for k in a)
