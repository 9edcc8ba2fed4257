"""The LayerNorm LSTM (issue 22, item 5): Ba et al. 2016's equations by hand, fast path = reference.

A pure-Python oracle (lists of floats, LN written out) against the cell's step; the fast path
(:mod:`rnnkit.layers.lnlstm`) against the reference loop in float64 with gradients, with and
without lengths, one and two directions and layers; its kernel's hand-written backward
against autograd through the cell's update over several backward chunks; ``gradcheck`` on
the step and on the kernel.
"""

from __future__ import annotations

import math

import pytest
import torch

import rnnkit
from conftest import F64, assert_all_close, run_and_grad
from rnnkit.cells import LayerNormLSTMCell, LSTMState
from rnnkit.layers.lnlstm import CHUNK, KERNEL_FROM, LNLSTMRecurrence, step_loop

LENGTHS = [7, 3, 5, 1]


def _ln(v: list[float], gain: list[float], shift: list[float], eps: float = 1e-5) -> list[float]:
    mu = sum(v) / len(v)
    var = sum((x - mu) ** 2 for x in v) / len(v)
    return [a * (x - mu) / math.sqrt(var + eps) + b for x, a, b in zip(v, gain, shift)]


def _matvec(W: list[list[float]], v: list[float]) -> list[float]:
    return [sum(w * x for w, x in zip(row, v)) for row in W]


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_three_steps_by_hand_from_the_papers_equations():
    torch.manual_seed(3)
    cell = LayerNormLSTMCell(3, 2, dtype=torch.float64)
    with torch.no_grad():  # gains and shifts away from 1 and 0, so that each is tested
        for name, p in cell.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    P = {name: p.tolist() for name, p in cell.named_parameters()}
    b = [u + v for u, v in zip(P["bias_ih"], P["bias_hh"])]
    xs = torch.randn(3, 1, 3, dtype=torch.float64)
    h, c = [0.2, -0.4], [0.5, 0.1]
    state = LSTMState(torch.tensor([h], dtype=torch.float64), torch.tensor([c], dtype=torch.float64))
    for t in range(3):
        x = xs[t, 0].tolist()
        # (i; f; g; o) = LN(θ_h h; α1, β1) + LN(θ_x x; α2, β2) + b
        pre = [
            u + v + w
            for u, v, w in zip(
                _ln(_matvec(P["weight_hh"], h), P["ln_hh_weight"], P["ln_hh_bias"]),
                _ln(_matvec(P["weight_ih"], x), P["ln_ih_weight"], P["ln_ih_bias"]),
                b,
            )
        ]
        i, f, g, o = pre[0:2], pre[2:4], pre[4:6], pre[6:8]
        c = [_sigmoid(fj) * cj + _sigmoid(ij) * math.tanh(gj) for fj, cj, ij, gj in zip(f, c, i, g)]
        h = [_sigmoid(oj) * math.tanh(n) for oj, n in zip(o, _ln(c, P["ln_c_weight"], P["ln_c_bias"]))]
        state = cell(xs[t], state)
        assert state.h[0].tolist() == pytest.approx(h, rel=1e-12, abs=1e-14)
        assert state.c[0].tolist() == pytest.approx(c, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("options", [{}, {"bias": False, "learn_initial_state": True}], ids=["bias", "h0"])
def test_fast_path_equals_reference_in_float64(options, bidirectional, layers, with_lengths):
    torch.manual_seed(0)
    ref = rnnkit.rnn("lnlstm", 3, 5, layers, bidirectional, impl="reference", dtype=torch.float64, **options)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    fast = rnnkit.rnn("lnlstm", 3, 5, layers, bidirectional, dtype=torch.float64, **options)
    fast.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    lengths = LENGTHS if with_lengths else None
    out_r, finals_r, grads_r = run_and_grad(ref, x, lengths)
    out_f, finals_f, grads_f = run_and_grad(fast, x, lengths)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(finals_f, finals_r, **F64)
    assert all(gr is not None for gr in grads_r)
    assert_all_close(grads_f, grads_r, **F64)


def test_gradcheck_cell():
    torch.manual_seed(0)
    cell = LayerNormLSTMCell(3, 4, dtype=torch.float64)
    names = [n for n, _ in cell.named_parameters()]
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def step(x, h, c, *weights):
        out = torch.func.functional_call(cell, dict(zip(names, weights)), (x, LSTMState(h, c)))
        return tuple(out)

    assert torch.autograd.gradcheck(step, (x, h, c, *cell.parameters()))


def test_padding_changes_no_real_output_and_weight_drop_works():
    torch.manual_seed(1)
    rnn = rnnkit.rnn("lnlstm", 3, 4, 2, True, weight_drop=0.3, dtype=torch.float64).eval()
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    garbage = x.clone()
    for n, length in enumerate(LENGTHS):
        garbage[length:, n] = 50.0
    out, final = rnn(x, lengths=LENGTHS)
    out_g, final_g = rnn(garbage, lengths=LENGTHS)
    torch.testing.assert_close(out_g, out, rtol=0, atol=0)
    assert_all_close(list(final_g), list(final), rtol=0, atol=0)
    rnn.train()
    assert torch.isfinite(rnn(x)[0]).all()


def _kernel_inputs(L: int, seed: int = 0):
    """xp = LN(θ_x x) + b for L steps, a state that is not zero, the recurrent weights with
    gains and shifts away from 1 and 0, and lengths 70/50/4/1 cut to L."""
    torch.manual_seed(seed)
    N, H = 4, 3
    xp = torch.randn(L, N, 4 * H, dtype=torch.float64)
    state = [torch.randn(N, H, dtype=torch.float64) for _ in range(2)]
    recurrent = [
        0.5 * torch.randn(4 * H, H, dtype=torch.float64),  # θ_h
        1 + 0.3 * torch.randn(4 * H, dtype=torch.float64),  # α₁
        0.3 * torch.randn(4 * H, dtype=torch.float64),  # β₁
        1 + 0.3 * torch.randn(H, dtype=torch.float64),  # α₃
        0.3 * torch.randn(H, dtype=torch.float64),  # β₃
    ]
    mask = torch.tensor([70, 50, 4, 1]).clamp(max=L).gt(torch.arange(L)[:, None]).unsqueeze(-1)
    return xp, state, recurrent, mask


@pytest.mark.parametrize("length", [70, 7], ids=["three-chunks", "one-chunk"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "lengths"])
def test_kernel_equals_autograd_through_the_update(with_mask, length):
    """The kernel's hand-written backward against autograd through the cell's update, every
    output weighted, every input's gradient (the state's, θ_h's, the gains' and shifts')."""
    assert length > 2 * CHUNK or length < CHUNK
    xp, state, recurrent, mask = _kernel_inputs(length)
    mask = mask if with_mask else None
    leaves = [t.clone().requires_grad_(True) for t in (xp, *state, *recurrent)]
    got = LNLSTMRecurrence.apply(*leaves, mask)
    y, final = step_loop(leaves[0], LSTMState(*leaves[1:3]), *leaves[3:], mask)
    want = (y, *final)
    assert_all_close(list(got), list(want), **F64)
    weights = [torch.randn_like(t) for t in want]
    grads = [
        torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, out)), leaves) for out in (got, want)
    ]
    assert_all_close(list(grads[0]), list(grads[1]), **F64)
    assert all(g.abs().sum() > 0 for g in grads[0])


def test_gradcheck_kernel():
    xp, state, recurrent, mask = _kernel_inputs(5, seed=1)
    inputs = tuple(t.clone().requires_grad_(True) for t in (xp, *state, *recurrent))
    assert torch.autograd.gradcheck(lambda *a: LNLSTMRecurrence.apply(*a, mask), inputs)


def test_without_a_gradient_the_layer_steps_the_cell():
    """Evaluation takes the step loop, not the kernel: the same outputs as the reference."""
    torch.manual_seed(4)
    ref = rnnkit.rnn("lnlstm", 3, 5, 2, True, impl="reference", dtype=torch.float64)
    fast = rnnkit.rnn("lnlstm", 3, 5, 2, True, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        out_r, final_r = ref(x, lengths=LENGTHS)
        out_f, final_f = fast(x, lengths=LENGTHS)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(list(final_f), list(final_r), **F64)


@pytest.mark.parametrize("hidden", [KERNEL_FROM - 1, KERNEL_FROM])
def test_the_layer_trains_through_the_kernel_from_its_width(hidden, monkeypatch):
    """A layer at least KERNEL_FROM wide trains through the kernel, a narrower one through the
    step loop (as measured fastest); both equal the reference loop."""
    calls = []
    real = LNLSTMRecurrence.apply
    monkeypatch.setattr(LNLSTMRecurrence, "apply", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(5)
    ref = rnnkit.rnn("lnlstm", 3, hidden, 1, impl="reference", dtype=torch.float64)
    fast = rnnkit.rnn("lnlstm", 3, hidden, 1, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    out_r, finals_r, grads_r = run_and_grad(ref, x, [3, 2])
    out_f, finals_f, grads_f = run_and_grad(fast, x, [3, 2])
    assert bool(calls) is (hidden >= KERNEL_FROM)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(finals_f, finals_r, **F64)
    assert_all_close(grads_f, grads_r, **F64)
