"""Each cell against an independent oracle: torch's cell, finite differences, the equations by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell, LSTMState, detach_state, hidden_of, irnn_cell
from rnnkit.errors import RnnkitError

F64 = {"rtol": 1e-8, "atol": 1e-10}


def _pair(cell_cls, torch_cls, **kw):
    torch.manual_seed(0)
    ours = cell_cls(5, 7, dtype=torch.float64, **kw)
    theirs = torch_cls(
        5, 7, **({"nonlinearity": kw["nonlinearity"]} if "nonlinearity" in kw else {})
    ).double()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize(
    "cell_cls, torch_cls, kw",
    [
        (ElmanCell, nn.RNNCell, {"nonlinearity": "tanh"}),
        (ElmanCell, nn.RNNCell, {"nonlinearity": "relu"}),
        (GRUCell, nn.GRUCell, {}),
        (LSTMCell, nn.LSTMCell, {}),
    ],
    ids=["elman-tanh", "elman-relu", "gru", "lstm"],
)
def test_cell_equals_torch_cell_with_gradients(cell_cls, torch_cls, kw):
    ours, theirs = _pair(cell_cls, torch_cls, **kw)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    state = LSTMState(h, c) if ours.has_cell_state else h
    a = ours(x, state)
    b = theirs(x, (h, c) if ours.has_cell_state else h)
    a_list = list(a) if isinstance(a, tuple) else [a]
    b_list = list(b) if isinstance(b, tuple) else [b]
    for u, v in zip(a_list, b_list):
        torch.testing.assert_close(u, v, **F64)
    inputs = [x, h, c, *ours.parameters()] if ours.has_cell_state else [x, h, *ours.parameters()]
    w = [torch.randn_like(t) for t in a_list]
    ga = torch.autograd.grad(sum((t * u).sum() for t, u in zip(a_list, w)), inputs, allow_unused=True)
    inputs_b = inputs[: len(inputs) - len(list(ours.parameters()))] + list(theirs.parameters())
    gb = torch.autograd.grad(sum((t * u).sum() for t, u in zip(b_list, w)), inputs_b, allow_unused=True)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, **F64)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(3, 4, "sigmoid", bias=False, dtype=torch.float64),
        lambda: ElmanCell(3, 4, "tanh", dtype=torch.float64),
        lambda: irnn_cell(3, 4, input_std=0.5, dtype=torch.float64),
        lambda: GRUCell(3, 4, dtype=torch.float64),
        lambda: GRUCell(3, 4, reset_after=False, dtype=torch.float64),
        lambda: GRUCell(3, 4, bias=False, reset_after=False, dtype=torch.float64),
        lambda: LSTMCell(3, 4, forget_bias=1.0, dtype=torch.float64),
        lambda: LSTMCell(3, 4, bias=False, dtype=torch.float64),
    ],
    ids=[
        "elman-sigmoid-nobias",
        "elman-tanh",
        "irnn",
        "gru",
        "gru-cho",
        "gru-cho-nobias",
        "lstm",
        "lstm-nobias",
    ],
)
def test_gradcheck_cell(make):
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)  # positive: away from relu's kink
    if cell.has_cell_state:
        c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, h, c: tuple(cell(x, LSTMState(h, c))), (x, h, c))
    else:
        assert torch.autograd.gradcheck(cell, (x, h))


def test_sigmoid_elman_is_the_slide_equation():
    """h_t = σ(W_hh h_{t-1} + W_hx x_t), no bias, written out independently."""
    torch.manual_seed(0)
    cell = ElmanCell(3, 4, "sigmoid", bias=False, dtype=torch.float64)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    expected = 1 / (1 + torch.exp(-(h @ cell.weight_hh.T + x @ cell.weight_ih.T)))
    torch.testing.assert_close(cell(x, h), expected, **F64)
    assert cell.bias_ih is None and len(list(cell.parameters())) == 2


def test_cho_gru_resets_before_the_matrix_product():
    """Cho et al. 2014: h̃ = tanh(W x + b_in + U (r ∘ h) + b_hn), written out with numpy."""
    torch.manual_seed(0)
    cell = GRUCell(3, 4, reset_after=False, dtype=torch.float64)
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    W, U = cell.weight_ih.detach().numpy(), cell.weight_hh.detach().numpy()
    bi, bh = cell.bias_ih.detach().numpy(), cell.bias_hh.detach().numpy()
    xn, hn = x.numpy(), h.numpy()

    def sig(v):
        return 1 / (1 + __import__("numpy").exp(-v))

    H = 4
    r = sig(xn @ W[:H].T + bi[:H] + hn @ U[:H].T + bh[:H])
    z = sig(xn @ W[H : 2 * H].T + bi[H : 2 * H] + hn @ U[H : 2 * H].T + bh[H : 2 * H])
    n = __import__("numpy").tanh(xn @ W[2 * H :].T + bi[2 * H :] + (r * hn) @ U[2 * H :].T + bh[2 * H :])
    expected = z * hn + (1 - z) * n
    torch.testing.assert_close(cell(x, h), torch.from_numpy(expected), **F64)
    # and it is a different function from the slide's (torch's) placement
    slide = GRUCell(3, 4, dtype=torch.float64)
    slide.load_state_dict(cell.state_dict())
    assert not torch.allclose(slide(x, h), cell(x, h))


def test_irnn_initialisation():
    torch.manual_seed(0)
    cell = irnn_cell(50, 64, scale=0.5)
    assert cell.nonlinearity == "relu"
    torch.testing.assert_close(cell.weight_hh, 0.5 * torch.eye(64))
    assert torch.count_nonzero(cell.bias_ih) == 0 and torch.count_nonzero(cell.bias_hh) == 0
    std = cell.weight_ih.std().item()
    assert 0.0008 < std < 0.0012, std  # N(0, 0.001^2) over 3200 draws
    assert abs(cell.weight_ih.mean().item()) < 1e-4
    # the identity copies a positive state forward when the input is zero
    h = torch.rand(2, 64)
    torch.testing.assert_close(irnn_cell(50, 64)(torch.zeros(2, 50), h), h)


def test_lstm_forget_bias():
    cell = LSTMCell(3, 5, forget_bias=1.0)
    torch.testing.assert_close(cell.bias_ih[5:10] + cell.bias_hh[5:10], torch.ones(5))
    other = cell.bias_ih[:5]
    assert not torch.allclose(other, torch.ones(5))


def test_learned_initial_state_and_zeros():
    cell = GRUCell(3, 4, learn_initial_state=True)
    with torch.no_grad():
        cell.h_0.copy_(torch.arange(4.0))
    torch.testing.assert_close(cell.initial_state(2), torch.arange(4.0).expand(2, 4))
    lstm = LSTMCell(3, 4)
    s = lstm.initial_state(3)
    assert isinstance(s, LSTMState) and not s.h.any() and not s.c.any()
    assert "h_0" not in dict(lstm.named_parameters())
    assert {"h_0", "c_0"} <= set(dict(LSTMCell(3, 4, learn_initial_state=True).named_parameters()))


def test_state_helpers():
    h = torch.randn(2, 3, requires_grad=True)
    s = LSTMState(h * 2, h * 3)
    d = detach_state([s, h * 4])
    assert isinstance(d[0], LSTMState) and not d[0].h.requires_grad and not d[1].requires_grad
    assert hidden_of(s) is s.h and hidden_of(h) is h
    with pytest.raises(TypeError):
        detach_state("not a state")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ElmanCell(3, 4, nonlinearity="softplus"), "nonlinearity"),
        (lambda: ElmanCell(0, 4), "input_size"),
        (lambda: GRUCell(3, -1), "hidden_size"),
        (lambda: irnn_cell(3, 4, input_std=-1.0), "input_std"),
    ],
)
def test_bad_cell_options(make, match):
    with pytest.raises(RnnkitError, match=match):
        make()
