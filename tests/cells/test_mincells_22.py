"""minGRU and minLSTM (issue 22): the reference loop, the parallel scan and the paper's equations agree.

The fast path (:mod:`rnnkit.layers.scan`) against the reference path (the cell's step in
:class:`~rnnkit.layers.Recurrent`'s loop) in float64: outputs, final states and the
gradients of the input, the initial state and every parameter, with and without lengths,
one and two directions, one and two layers; ``gradcheck`` on each cell's step; and a
3-step case computed by hand from Feng et al. 2024's equations for each cell.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import rnnkit
from conftest import F64, assert_all_close, run_and_grad
from rnnkit.cells import MinGRUCell, MinLSTMCell
from rnnkit.cells.mingru import g
from rnnkit.errors import RnnkitError
from rnnkit.layers import fast
from rnnkit.layers.scan import best_method, scan_direction

LENGTHS = [7, 3, 5, 1]  # N = 4, L = 7, unsorted, one of length 1

CASES = [
    ("mingru", {}),
    ("mingru", {"candidate": "linear"}),
    ("minlstm", {}),
    ("minlstm", {"candidate": "linear", "learn_initial_state": True}),
]
CASE_IDS = ["mingru-g", "mingru-linear", "minlstm-g", "minlstm-linear-h0"]


def _pair(cell: str, options: dict, layers: int, bidirectional: bool):
    torch.manual_seed(0)
    ref = rnnkit.rnn(cell, 3, 5, layers, bidirectional, impl="reference", dtype=torch.float64, **options)
    if options.get("learn_initial_state"):
        with torch.no_grad():  # learned h_0 away from zero, so that its gradient is tested
            for name, p in ref.named_parameters():
                if name.startswith("h_0"):
                    p.normal_()
    fast = rnnkit.rnn(cell, 3, 5, layers, bidirectional, dtype=torch.float64, **options)
    fast.load_state_dict(ref.state_dict(), strict=True)
    return ref, fast


@pytest.fixture(params=["log", "loop"])
def method(request, monkeypatch):
    """The fast path with the recurrence solved by the log-space scan, or by the in-place loop."""
    for cls in (MinGRUCell, MinLSTMCell):
        monkeypatch.setitem(fast._OWN, cls, functools.partial(scan_direction, method=request.param, chunk=3))
    return request.param


def test_each_device_runs_the_method_measured_fastest_there():
    assert best_method(torch.device("cpu")) == "loop"
    assert best_method(torch.device("cuda")) == "log"


@pytest.mark.parametrize("given_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell, options", CASES, ids=CASE_IDS)
def test_fast_path_equals_reference_in_float64(
    cell, options, bidirectional, layers, with_lengths, given_state, method
):
    ref, fast_rnn = _pair(cell, options, layers, bidirectional)
    torch.manual_seed(1)
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    lengths = LENGTHS if with_lengths else None
    state = torch.randn(layers * (1 + bidirectional), 4, 5, dtype=torch.float64) if given_state else None
    out_r, finals_r, grads_r = run_and_grad(ref, x, lengths, state)
    out_f, finals_f, grads_f = run_and_grad(fast_rnn, x, lengths, state)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(finals_f, finals_r, **F64)
    unused = given_state and options.get("learn_initial_state", False)  # a given state replaces h_0
    assert sum(gr is None for gr in grads_r) == (layers * (1 + bidirectional) if unused else 0)
    assert [gr is None for gr in grads_f] == [gr is None for gr in grads_r]
    used_f, used_r = [gf for gf in grads_f if gf is not None], [gr for gr in grads_r if gr is not None]
    assert_all_close(used_f, used_r, **F64)


@pytest.mark.parametrize("cell, options", CASES, ids=CASE_IDS)
def test_padding_changes_no_real_output_nor_final_state(cell, options, method):
    _, rnn = _pair(cell, options, 2, True)
    torch.manual_seed(2)
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    garbage = x.clone()
    for n, length in enumerate(LENGTHS):
        garbage[length:, n] = 1e3 * torch.randn(7 - length, 3, dtype=torch.float64)
    out, final = rnn(x, lengths=LENGTHS)
    out_g, final_g = rnn(garbage, lengths=LENGTHS)
    torch.testing.assert_close(out_g, out, rtol=0, atol=0)
    torch.testing.assert_close(final_g, final, rtol=0, atol=0)
    for n, length in enumerate(LENGTHS):  # each sequence alone, unpadded: the same numbers
        alone, final_alone = rnn(x[:length, n : n + 1])
        torch.testing.assert_close(out[:length, n : n + 1], alone, **F64)
        torch.testing.assert_close(final[:, n : n + 1], final_alone, **F64)
        assert out[length:, n].abs().max().item() == 0 if length < 7 else True


@pytest.mark.parametrize(
    "make",
    [
        lambda: MinGRUCell(3, 4, dtype=torch.float64),
        lambda: MinGRUCell(3, 4, bias=False, candidate="linear", dtype=torch.float64),
        lambda: MinLSTMCell(3, 4, dtype=torch.float64),
        lambda: MinLSTMCell(3, 4, bias=False, candidate="linear", dtype=torch.float64),
    ],
    ids=["mingru", "mingru-linear-nobias", "minlstm", "minlstm-linear-nobias"],
)
def test_gradcheck_cell(make):
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    params = tuple(cell.parameters())

    def step(x, h, *weights):
        named = dict(zip([n for n, _ in cell.named_parameters()], weights))
        return torch.func.functional_call(cell, named, (x, h))

    assert torch.autograd.gradcheck(step, (x, h, *params))


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _g(v: float) -> float:
    return v + 0.5 if v >= 0 else _sigmoid(v)


def _one_unit(cell_cls, rows: list[list[float]], biases: list[float]):
    """A cell with input size 2 and one hidden unit, its weights written out."""
    cell = cell_cls(2, 1, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(rows, dtype=torch.float64))
        cell.bias_ih.copy_(torch.tensor(biases, dtype=torch.float64))
    return cell


XS = [(1.0, -2.0), (0.5, 0.25), (-1.5, 3.0)]
H0 = 0.3


def test_mingru_three_steps_by_hand():
    # z_t = σ(w_z·x_t + b_z), h~_t = g(w_h·x_t + b_h), h_t = (1 - z_t) h_{t-1} + z_t h~_t
    w_z, b_z, w_h, b_h = (0.4, -0.3), 0.1, (-0.6, 0.2), 0.05
    expected, h = [], H0
    for x1, x2 in XS:
        z = _sigmoid(w_z[0] * x1 + w_z[1] * x2 + b_z)
        h_tilde = _g(w_h[0] * x1 + w_h[1] * x2 + b_h)
        h = (1 - z) * h + z * h_tilde
        expected.append(h)
    cell = _one_unit(MinGRUCell, [list(w_z), list(w_h)], [b_z, b_h])
    _check_three_steps("mingru", cell, expected)


def test_minlstm_three_steps_by_hand():
    # f_t, i_t = σ(·), h~_t = g(·), f'_t = f_t/(f_t + i_t), i'_t = i_t/(f_t + i_t),
    # h_t = f'_t h_{t-1} + i'_t h~_t
    w_f, b_f, w_i, b_i, w_h, b_h = (0.7, 0.1), 0.2, (-0.2, 0.5), -0.1, (0.3, -0.4), 0.0
    expected, h = [], H0
    for x1, x2 in XS:
        f = _sigmoid(w_f[0] * x1 + w_f[1] * x2 + b_f)
        i = _sigmoid(w_i[0] * x1 + w_i[1] * x2 + b_i)
        h_tilde = _g(w_h[0] * x1 + w_h[1] * x2 + b_h)
        h = f / (f + i) * h + i / (f + i) * h_tilde
        expected.append(h)
    cell = _one_unit(MinLSTMCell, [list(w_f), list(w_i), list(w_h)], [b_f, b_i, b_h])
    _check_three_steps("minlstm", cell, expected)


def _check_three_steps(name: str, cell, expected: list[float]) -> None:
    """The reference step, and the fast path by either method, against the hand computation."""
    x = torch.tensor(XS, dtype=torch.float64).view(3, 1, 2)
    h, steps = torch.tensor([[H0]], dtype=torch.float64), []
    for t in range(3):  # the reference step
        h = cell(x[t], h)
        steps.append(h.item())
    assert steps == pytest.approx(expected, rel=1e-12, abs=1e-12)
    weights = {"weight_ih": cell.weight_ih, "bias_ih": cell.bias_ih}
    for method in ("log", "loop"):
        out, final = scan_direction(cell, x, torch.tensor([[H0]], dtype=torch.float64), weights, None, method)
        assert out.flatten().tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert final.item() == pytest.approx(expected[-1], rel=1e-12)


def test_g_is_the_papers_activation():
    v = torch.tensor([-3.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64)
    expected = [_sigmoid(-3.0), _sigmoid(-0.5), 0.5, 1.0, 2.5]
    assert g(v).tolist() == pytest.approx(expected, rel=1e-15)


def test_min_cells_have_no_recurrent_weights_and_refuse_weight_drop():
    rnn = rnnkit.rnn("minlstm", 3, 5, num_layers=2, bidirectional=True)
    assert not any("weight_hh" in n or "bias_hh" in n for n, _ in rnn.named_parameters())
    assert rnn.weight_ih_l1_reverse.shape == (15, 10)
    assert sum(p.numel() for p in rnn.parameters()) == 2 * (15 * 3 + 15) + 2 * (15 * 10 + 15)
    with pytest.raises(RnnkitError, match="weight_drop drops entries of W_hh, and MinGRUCell has none"):
        rnnkit.rnn("mingru", 3, 5, weight_drop=0.5)
    with pytest.raises(RnnkitError, match="candidate must be one of"):
        rnnkit.rnn("mingru", 3, 5, candidate="tanh")


def test_float32_fast_path_matches_the_reference():
    torch.manual_seed(0)
    ref = rnnkit.rnn("mingru", 8, 16, 2, impl="reference")
    rnn = rnnkit.rnn("mingru", 8, 16, 2)
    rnn.load_state_dict(ref.state_dict())
    x = torch.randn(20, 3, 8)
    torch.testing.assert_close(rnn(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)
