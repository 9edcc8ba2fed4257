"""Issue 16, item 1: a backward direction's gradient flows toward later steps (d = k - t).

Oracles: an explicit float64 unroll of a bidirectional Elman language model (no hooks),
hand-built matrices for the distance curve and the Jacobian chain; and the pure helpers
that keep the plots' log axes off denormals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.analysis import axes
from rnnkit.analysis import gradient_flow as gf
from rnnkit.config import ModelConfig
from rnnkit.models.config import build_model


def bidirectional_elman(nonlinearity: str = "sigmoid", seed: int = 0):
    torch.manual_seed(seed)
    config = ModelConfig(
        cell="elman",
        nonlinearity=nonlinearity,
        embed_size=5,
        hidden_size=6,
        num_layers=1,
        bidirectional=True,
    )
    return build_model(config, 11)


def unrolled_backward_gradients(model, tokens) -> np.ndarray:
    """||∂E_t/∂h←_k|| by an explicit loop: h←_k = σ(W_ih x_k + W_hh h←_{k+1} + b), the head
    reading [h→_t; h←_t]."""
    p = {n: v.detach().double().requires_grad_() for n, v in model.named_parameters()}
    x = p["embedding.weight"][tokens[:-1]]
    T, N = x.shape[:2]

    def run(suffix: str, order) -> list[torch.Tensor]:
        W_ih, W_hh = p[f"rnn.weight_ih_l0{suffix}"], p[f"rnn.weight_hh_l0{suffix}"]
        b = p[f"rnn.bias_ih_l0{suffix}"] + p[f"rnn.bias_hh_l0{suffix}"]
        h, hs = torch.zeros(N, W_hh.shape[0], dtype=torch.float64), [None] * T
        for t in order:
            h = torch.sigmoid(x[t] @ W_ih.T + h @ W_hh.T + b)
            h.retain_grad()
            hs[t] = h
        return hs

    forward, backward = run("", range(T)), run("_reverse", reversed(range(T)))
    h = torch.cat([torch.stack(forward), torch.stack(backward)], -1)
    logits = h @ p["head.proj.weight"].T + p["head.proj.bias"]
    E = -torch.log_softmax(logits, -1).gather(-1, tokens[1:, :, None])[..., 0]
    G = np.zeros((T, T))
    for t in range(T):
        for h_k in backward:
            h_k.grad = None
        E[t].sum().backward(retain_graph=True)
        for k in range(T):
            if backward[k].grad is not None:  # None: E_t does not depend on h←_k
                G[t, k] = backward[k].grad.norm(dim=-1).mean().item()
    return G


def test_backward_direction_gradient_reaches_later_steps_as_an_explicit_unroll_does():
    model = bidirectional_elman()
    tokens = torch.randint(11, (14, 2), generator=torch.Generator().manual_seed(1))
    tr = gf.trace(model, tokens, index=1)
    assert tr.reverse and tr.steps == 13
    G = gf.gradient_matrix(tr)
    np.testing.assert_allclose(G, unrolled_backward_gradients(model, tokens), rtol=1e-10, atol=1e-300)
    assert G[5, 4] == 0 and G[5, 9] > 0  # E_5 reaches h←_9 (later), not h←_4


def test_backward_direction_by_distance_is_nonzero_finite_and_decays_for_a_sigmoid_elman():
    """Before the fix every distance read 0.00e+00 (k <= t was measured, where nothing flows)."""
    model = bidirectional_elman("sigmoid")
    tokens = torch.randint(11, (40, 2), generator=torch.Generator().manual_seed(2))
    tr = gf.trace(model, tokens, index=1)
    curve = gf.by_distance(gf.gradient_matrix(tr), reverse=tr.reverse)
    assert np.isfinite(curve).all() and (curve > 0).all()
    assert curve[30] < 1e-12 * curve[1]  # f' <= 1/4 at every step
    assert all(curve[d + 5] < curve[d] for d in range(1, 30, 5))
    at = gf.gradient_at(tr, 3, [0, 1, 20])
    G = gf.gradient_matrix(tr)
    assert at == pytest.approx({0: G[3, 3], 1: G[3, 4], 20: G[3, 23]}, rel=1e-12)


def test_by_distance_reads_the_side_each_direction_reaches():
    G = np.zeros((4, 4))
    for t in range(4):
        for k in range(t, 4):
            G[t, k] = 10.0 ** -(k - t)  # only the upper triangle, as a backward direction has
    np.testing.assert_allclose(gf.by_distance(G, reverse=True), [1, 0.1, 0.01, 0.001])
    assert (gf.by_distance(G)[1:] == 0).all()  # read as forward (the old bug): nothing reaches back
    assert gf.by_distance(G.T)[2] == pytest.approx(0.01)


def test_backward_jacobian_products_chain_in_the_order_the_direction_ran():
    """∂s_k/∂s_{k+2} = J_k J_{k+1} for a backward direction, J_{k+2} J_{k+1} forward."""
    g = torch.Generator().manual_seed(0)
    J = [torch.randn(3, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    norm = lambda m: torch.linalg.matrix_norm(m, ord=2).item()  # noqa: E731
    backward = gf.product_norms(J, 2, reverse=True)
    assert backward[2] == pytest.approx(norm(J[0] @ J[1]) / 2 + norm(J[1] @ J[2]) / 2, rel=1e-12)
    forward = gf.product_norms(J, 2)
    assert forward[2] == pytest.approx(norm(J[1] @ J[0]) / 2 + norm(J[2] @ J[1]) / 2, rel=1e-12)


def test_log_axis_limits_never_reach_denormals_and_skip_zeros():
    """gradient_by_distance.png had spanned 1e-314 to 1e14."""
    assert axes.log_limits([1.0, 0.5, 1e-320, 0.0, float("nan"), float("inf")]) == (0.25, 2.0)
    bottom, top = axes.log_limits([1e14], [1e-314, 1e-200])
    assert bottom > axes.FLOOR and bottom == pytest.approx(1e14 / axes.LOG_RANGE / 2) and top == 2e14
    assert axes.log_limits([0.0, -1.0, float("nan")]) is None
    assert axes.drawable([0.0, 2.0, float("inf")], log=True)[1] == 2.0
    assert np.isnan(axes.drawable([0.0, 2.0, float("inf")], log=True)[[0, 2]]).all()
    assert axes.drawable([0.0, -1.0], log=False).tolist() == [0.0, -1.0]
    lo, hi = axes.color_limits(np.log10(axes.drawable([1.0, 1e-320, 1e-30, 0.0], log=True)))
    assert (lo, hi) == (pytest.approx(-30.0), 0.0)
    assert axes.color_limits(np.array([0.0, -150.0, np.nan])) == (-100.0, 0.0)  # LOG_RANGE deep
