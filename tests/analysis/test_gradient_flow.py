"""Gradient-flow diagnostics against hand-written oracles: an explicit unroll, hand Jacobians, hand gates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.analysis import gradient_flow as gf
from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model

ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def elman_lm(nonlinearity: str, layers: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    config = ModelConfig(
        cell="elman", nonlinearity=nonlinearity, embed_size=5, hidden_size=7, num_layers=layers
    )
    return build_model(config, 11)


def unrolled_gradients(model, tokens):
    """||∂E_t/∂h_k|| by an explicit float64 loop over the last layer's equations (no hooks)."""
    p = {n: v.detach().double().requires_grad_() for n, v in model.named_parameters()}
    f = ACT[model.rnn.cell.nonlinearity]
    x = p["embedding.weight"][tokens[:-1]]  # (T, N, E)
    T, N = x.shape[:2]
    inputs = x
    for layer in range(model.rnn.num_layers):
        W_ih, W_hh = p[f"rnn.weight_ih_l{layer}"], p[f"rnn.weight_hh_l{layer}"]
        b = p[f"rnn.bias_ih_l{layer}"] + p[f"rnn.bias_hh_l{layer}"]
        h = torch.zeros(N, W_hh.shape[0], dtype=torch.float64)
        hs = []
        for t in range(T):
            h = f(inputs[t] @ W_ih.T + h @ W_hh.T + b)
            h.retain_grad()
            hs.append(h)
        inputs = torch.stack(hs)
    logits = inputs @ p["head.proj.weight"].T + p["head.proj.bias"]
    E = -torch.log_softmax(logits, -1).gather(-1, tokens[1:, :, None])[..., 0]  # (T, N)
    G = np.zeros((T, T))  # 0 where E_t does not depend on h_k (k > t)
    for t in range(T):
        for h in hs:
            h.grad = None
        E[t].sum().backward(retain_graph=True)
        for k in range(t + 1):
            G[t, k] = hs[k].grad.norm(dim=-1).mean().item()
    return G


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradient_matrix_equals_an_explicit_unroll(nonlinearity, layers):
    model = elman_lm(nonlinearity, layers)
    tokens = torch.randint(11, (13, 3), generator=torch.Generator().manual_seed(1))
    G = gf.gradient_matrix(gf.trace(model, tokens))
    expected = unrolled_gradients(model, tokens)
    np.testing.assert_allclose(G, expected, rtol=1e-10, atol=1e-300)
    assert G[0, 1] == 0 and G[5, 5] > 0


def test_gradient_at_and_by_distance_agree_with_the_matrix():
    model = elman_lm("tanh")
    tokens = torch.randint(11, (16, 2), generator=torch.Generator().manual_seed(2))
    tr = gf.trace(model, tokens)
    G = gf.gradient_matrix(tr)
    at = gf.gradient_at(tr, 14, [0, 3, 14])
    assert at == pytest.approx({0: G[14, 14], 3: G[14, 11], 14: G[14, 0]}, rel=1e-12)
    curve = gf.by_distance(G)
    assert curve[2] == pytest.approx(np.mean([G[t, t - 2] for t in range(2, 15)]), rel=1e-12)
    with pytest.raises(RnnkitError, match="distances must be in"):
        gf.gradient_at(tr, 3, [5])


def test_sigmoid_gradient_at_distance_50_is_below_float32_and_under_the_bound():
    model = elman_lm("sigmoid")
    tokens = torch.randint(11, (60, 1), generator=torch.Generator().manual_seed(3))
    tr = gf.trace(model, tokens)
    far = gf.gradient_at(tr, 55, [1, 50])
    assert 0 < far[50] < 1e-20 < far[1]
    bound = gf.elman_bound(tr)
    assert bound["beta_h"] <= 0.25 + 1e-12
    J = gf.step_jacobians(tr)
    norms = gf.spectral_norms(J)
    assert (norms <= bound["product"] * (1 + 1e-12)).all()  # ||∂h_j/∂h_{j-1}|| <= β_W β_h
    products = gf.product_norms(J, 30)
    d = np.arange(31)
    assert (products <= bound["product"] ** d * (1 + 1e-9)).all()  # <= (β_W β_h)^d


def test_elman_step_jacobian_is_diag_f_prime_times_W():
    model = elman_lm("tanh")
    tokens = torch.randint(11, (6, 1), generator=torch.Generator().manual_seed(4))
    tr = gf.trace(model, tokens)
    J = gf.step_jacobians(tr)
    W = model.rnn.weight_hh_l0.detach().double()
    for j, h in enumerate(tr.hidden):
        expected = torch.diag(1 - h[0].detach() ** 2) @ W
        torch.testing.assert_close(J[j], expected, rtol=1e-12, atol=1e-14)


def test_lstm_jacobian_is_of_h_and_c_and_gates_are_the_hand_written_ones():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="lstm", embed_size=4, hidden_size=5, num_layers=2), 9)
    tokens = torch.randint(9, (8, 3), generator=torch.Generator().manual_seed(5))
    tr = gf.trace(model, tokens)
    assert gf.step_jacobians(tr)[0].shape == (10, 10)
    gates = gf.gate_values(tr)
    assert set(gates) == {"input", "forget", "output"} and gates["forget"].shape == (7, 3, 5)
    p = {n: v.detach().double() for n, v in model.rnn.named_parameters()}
    x, (h, _) = tr.inputs[2], tr.previous[2]
    pre = x @ p["weight_ih_l1"].T + p["bias_ih_l1"] + h @ p["weight_hh_l1"].T + p["bias_hh_l1"]
    i, f, _, o = pre.chunk(4, -1)  # torch's order i|f|g|o
    torch.testing.assert_close(gates["input"][2], torch.sigmoid(i))
    torch.testing.assert_close(gates["forget"][2], torch.sigmoid(f))
    torch.testing.assert_close(gates["output"][2], torch.sigmoid(o))
    sat = gf.saturation(gates["forget"])
    assert sat["near_0"].shape == (5,) and ((sat["near_0"] + sat["near_1"]) <= 1).all()
    spectrum = gf.recurrent_spectrum(model, tr.index)
    assert set(spectrum) == {"input", "forget", "candidate", "output"}


def test_observing_changes_nothing():
    model = elman_lm("tanh")
    tokens = torch.randint(11, (9, 2))
    before, _ = model(tokens)
    gf.gradient_matrix(gf.trace(model, tokens))
    after, _ = model(tokens)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert all(not c._forward_hooks for c in model.rnn.cells)
    assert model.rnn.impl == "auto" and next(model.parameters()).dtype == torch.float32


def test_gates_of_an_elman_cell_are_refused():
    model = elman_lm("tanh")
    with pytest.raises(RnnkitError, match="gate statistics need a gated cell"):
        gf.gate_values(gf.trace(model, torch.randint(11, (5, 1))))


def _two_layer_relu(scale_top: float):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(cell="elman", nonlinearity="relu", embed_size=6, hidden_size=6, num_layers=2), 11
    )
    with torch.no_grad():
        model.rnn.weight_hh_l1.copy_(scale_top * torch.eye(6))
        model.rnn.bias_ih_l1.fill_(0.5)  # keep the top layer's units on
    return model


def test_layer_gradients_point_at_the_exploding_layer_and_step():
    """Layer 1's W_hh = 1.5 I (ReLU): its gradient grows 1.5x a step going back in time,
    so the peak is layer 1 at the first step; layer 0 only sees it through W_ih."""
    tokens = torch.randint(11, (30, 3), generator=torch.Generator().manual_seed(0))
    layers = gf.layer_gradients(_two_layer_relu(1.5), tokens)
    assert [(r["layer"], r["direction"]) for r in layers] == [(0, 0), (1, 0)]
    top = np.array(layers[1]["gradient"])
    assert layers[1]["peak_step"] == 0 and layers[1]["first_nonfinite"] is None
    assert top[0] > 1e3 * top[-1]  # ~1.5^28 from the last step to the first
    assert max(layers[1]["gradient"]) > max(layers[0]["gradient"])


def test_layer_gradients_name_the_first_non_finite_step():
    """W_hh = 50 I overflows even float64 (50^t > 1e308 near t = 181): the first
    non-finite state is found at that layer and step, not a NaN figure downstream."""
    tokens = torch.randint(11, (260, 1), generator=torch.Generator().manual_seed(0))
    layers = gf.layer_gradients(_two_layer_relu(50.0), tokens)
    assert layers[0]["first_nonfinite"] is None
    assert 150 < layers[1]["first_nonfinite"] < 200
