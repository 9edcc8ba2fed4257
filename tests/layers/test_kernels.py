"""The hand-written backward sweeps against finite differences (torch.autograd.gradcheck)."""

from __future__ import annotations

import pytest
import torch

from rnnkit.layers.kernels import ElmanRecurrence, GRURecurrence, LSTMRecurrence
from rnnkit.layers.state import step_mask

L, N, H = 5, 3, 4


def _mask(with_mask):
    return step_mask(torch.tensor([5, 2, 1]), L) if with_mask else None


def _rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("nonlinearity", ["sigmoid", "tanh", "relu"])
def test_gradcheck_elman(nonlinearity, with_mask):
    torch.manual_seed(0)
    mask = _mask(with_mask)
    xp, h0, w = _rand(L, N, H), _rand(N, H), _rand(H, H)
    assert torch.autograd.gradcheck(
        lambda xp, h0, w: ElmanRecurrence.apply(xp, h0, w, mask, nonlinearity), (xp, h0, w)
    )


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["slide", "cho"])
def test_gradcheck_gru(reset_after, with_mask, bias):
    torch.manual_seed(0)
    mask = _mask(with_mask)
    args = (_rand(L, N, 3 * H), _rand(N, H), _rand(3 * H, H)) + ((_rand(3 * H),) if bias else ())

    def f(xp, h0, w, b=None):
        return GRURecurrence.apply(xp, h0, w, b, mask, reset_after)

    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "masked"])
def test_gradcheck_lstm(with_mask):
    torch.manual_seed(0)
    mask = _mask(with_mask)
    args = (_rand(L, N, 4 * H), _rand(N, H), _rand(N, H), _rand(4 * H, H))
    assert torch.autograd.gradcheck(lambda xp, h0, c0, w: LSTMRecurrence.apply(xp, h0, c0, w, mask), args)


def test_outputs_are_zero_at_padding_and_final_state_at_last_token():
    torch.manual_seed(0)
    mask = _mask(True)
    xp, h0, w = torch.randn(L, N, H), torch.randn(N, H), torch.randn(H, H)
    y, h_last = ElmanRecurrence.apply(xp, h0, w, mask, "tanh")
    assert not y[2:, 1].any() and not y[1:, 2].any()
    torch.testing.assert_close(h_last[1], y[1, 1])
    torch.testing.assert_close(h_last[2], y[0, 2])
