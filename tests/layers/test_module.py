"""The rnn() builder and RNN module: torch names, state_dict round trips, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import RnnkitError


@pytest.mark.parametrize(
    "cell, options, torch_cls, torch_options",
    [
        ("elman", {}, nn.RNN, {}),
        ("elman", {"nonlinearity": "relu", "bias": False}, nn.RNN, {"nonlinearity": "relu", "bias": False}),
        ("gru", {}, nn.GRU, {}),
        ("lstm", {}, nn.LSTM, {}),
    ],
)
def test_state_dict_round_trips_with_torch_strict(cell, options, torch_cls, torch_options):
    ours = rnnkit.rnn(cell, 3, 4, num_layers=2, bidirectional=True, **options)
    theirs = torch_cls(3, 4, num_layers=2, bidirectional=True, **torch_options)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same names, same order
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), name
    fresh = torch_cls(3, 4, num_layers=2, bidirectional=True, **torch_options)
    fresh.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x)[0], fresh(x)[0], rtol=1e-5, atol=1e-6)


def test_learned_initial_state_keys():
    m = rnnkit.rnn("lstm", 3, 4, num_layers=2, bidirectional=True, learn_initial_state=True)
    keys = set(m.state_dict())
    assert {"h_0_l0", "c_0_l0", "h_0_l1_reverse", "c_0_l1_reverse"} <= keys
    plain = {k for k in keys if not k.startswith(("h_0", "c_0"))}
    assert plain == set(nn.LSTM(3, 4, num_layers=2, bidirectional=True).state_dict())


def test_shapes_like_torch():
    m = rnnkit.rnn("lstm", 3, 4, num_layers=3, bidirectional=True)
    out, (h, c) = m(torch.randn(6, 2, 3))
    assert out.shape == (6, 2, 8) and h.shape == c.shape == (6, 2, 4)
    g = rnnkit.rnn("gru", 3, 4)
    out, h = g(torch.randn(6, 2, 3), torch.zeros(1, 2, 4))
    assert out.shape == (6, 2, 4) and h.shape == (1, 2, 4)


def test_reference_path_follows_train_and_eval():
    """The reference path drops between layers in training mode only (no hidden module to sync)."""
    m = rnnkit.rnn("gru", 3, 4, num_layers=2, dropout=0.3, impl="reference")
    x = torch.randn(5, 2, 3)
    m.eval()
    torch.manual_seed(0)
    a = m(x)[0]
    torch.manual_seed(1)
    assert torch.equal(a, m(x)[0])
    m.train()
    torch.manual_seed(0)
    a = m(x)[0]
    torch.manual_seed(1)
    assert not torch.equal(a, m(x)[0])


def test_parameters_are_shared_by_both_paths():
    """An optimizer step on the module's parameters changes what the reference path computes."""
    m = rnnkit.rnn("elman", 3, 4, nonlinearity="sigmoid", impl="reference")
    x = torch.randn(4, 2, 3)
    before = m(x)[0]
    with torch.no_grad():
        m.weight_hh_l0.add_(1.0)
    assert not torch.allclose(before, m(x)[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.randn(5, 3)), "3-D"),
        (lambda m: m(torch.randn(5, 2, 7)), "feature size must be 3"),
        (lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64)), "float64"),
        (lambda m: m(torch.randn(0, 2, 3)), "at least one step"),
        (lambda m: m([[1.0]]), "torch.Tensor"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[6, 2]), r"\[1, L=5\]"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[0, 2]), r"\[1, L=5\]"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[-1, 2]), r"\[1, L=5\]"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=[3]), "one entry per sequence"),
        (lambda m: m(torch.randn(5, 2, 3), lengths=torch.tensor([2.0, 3.0])), "integers"),
        (lambda m: m(torch.randn(5, 2, 3), torch.zeros(1, 2, 4)), r"\(4, 2, 4\)"),
        (lambda m: m(torch.randn(5, 2, 3), torch.zeros(4, 2, 4)), "pair"),
        (lambda m: m(torch.randn(5, 2, 3), (torch.zeros(4, 2, 4), torch.zeros(4, 3, 4))), "c_0"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    m = rnnkit.rnn("lstm", 3, 4, num_layers=2, bidirectional=True)
    with pytest.raises(RnnkitError, match=match):
        call(m)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell": "transformer"}, "cell must be one of"),
        ({"cell": "lstm", "nonlinearity": "relu"}, "unknown option 'nonlinearity'"),
        ({"cell": "irnn", "reset_after": False}, "unknown option 'reset_after'"),
        ({"cell": "gru", "num_layers": 0}, "num_layers"),
        ({"cell": "gru", "dropout": 1.0}, "dropout"),
        ({"cell": "gru", "impl": "cudnn"}, "impl"),
        ({"cell": "gru", "reset_after": False, "impl": "native"}, None),
    ],
)
def test_bad_builder_arguments(kwargs, match):
    cell = kwargs.pop("cell")
    if match is None:  # valid to build, refused when run: torch has no Cho GRU
        m = rnnkit.rnn(cell, 3, 4, **kwargs)
        with pytest.raises(RnnkitError, match="no fused op"):
            m(torch.randn(2, 1, 3))
        return
    with pytest.raises(RnnkitError, match=match):
        rnnkit.rnn(cell, 3, 4, **kwargs)


def test_error_is_a_value_error():
    assert issubclass(RnnkitError, ValueError)
