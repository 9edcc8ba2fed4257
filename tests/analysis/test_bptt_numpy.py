"""The NumPy BPTT by hand: equal to torch autograd and to finite differences; the lecture's bounds hold."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.analysis.bptt_numpy import (
    FORMS,
    NONLINEARITIES,
    ElmanLMParams,
    backward,
    bound,
    dE_dW_by_distance,
    forward,
    jacobian,
    jacobian_product,
    two_step_example,
)
from rnnkit.errors import RnnkitError

CASES = list(itertools.product(NONLINEARITIES, FORMS))
CASE_IDS = [f"{nl}-{form}" for nl, form in CASES]
FIELDS = ("L", "W_hh", "W_hx", "W_S", "h0")
TORCH_F = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def _params(seed: int, V: int = 7, d: int = 4, D_h: int = 5) -> ElmanLMParams:
    return ElmanLMParams.random(np.random.default_rng(seed), V, d, D_h)


def _torch_oracle(params, words, nonlinearity, form, only_step=None, detach_before=None):
    """E (or E_t for t = only_step) and its gradients, by torch autograd on an independent forward.

    ``detach_before=k`` cuts the graph at h_k, so W only counts where it is used at steps > k.
    """
    P = {n: torch.tensor(getattr(params, n), dtype=torch.float64, requires_grad=True) for n in FIELDS}
    f = TORCH_F[nonlinearity]
    ids = torch.as_tensor(np.asarray(words))
    xs = P["L"][ids[:-1]]  # autograd's gather backward sums repeated rows
    h, losses = P["h0"], []
    for t in range(1, len(words)):
        if detach_before is not None and t - 1 == detach_before:
            h = h.detach()
        if form == "standard":
            h = f(P["W_hh"] @ h + P["W_hx"] @ xs[t - 1])
            logits = P["W_S"] @ h
        else:
            h = P["W_hh"] @ f(h) + P["W_hx"] @ xs[t - 1]
            logits = P["W_S"] @ f(h)
        losses.append(-torch.log_softmax(logits, dim=0)[ids[t]])
    E = torch.stack(losses).sum() if only_step is None else losses[only_step - 1]
    grads = torch.autograd.grad(E, list(P.values()), allow_unused=True)
    out = {n: (np.zeros_like(getattr(params, n)) if g is None else g.numpy()) for n, g in zip(FIELDS, grads)}
    return E.item(), torch.stack(losses).detach().numpy(), out


def _assert_grads_match(grads, expected, rtol=1e-10, atol=1e-12):
    for n in FIELDS:
        np.testing.assert_allclose(getattr(grads, "d" + n), expected[n], rtol=rtol, atol=atol, err_msg=n)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_backward_equals_torch_autograd(nonlinearity, form):
    params = _params(0)
    words = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5]
    cache = forward(params, words, nonlinearity, form)
    E, E_t, expected = _torch_oracle(params, words, nonlinearity, form)
    np.testing.assert_allclose(cache.E, E, rtol=1e-12)
    np.testing.assert_allclose(cache.E_t[1:], E_t, rtol=1e-12)
    assert cache.E_t[0] == 0.0
    np.testing.assert_allclose(cache.y_hat[1:].sum(axis=1), 1.0, rtol=1e-12)
    _assert_grads_match(backward(params, cache), expected)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_backward_equals_central_finite_differences(nonlinearity, form):
    params = _params(1)
    words = [0, 2, 6, 2, 3, 1, 4]
    grads = backward(params, forward(params, words, nonlinearity, form))
    rng, eps = np.random.default_rng(2), 1e-6
    for n in FIELDS:
        value = getattr(params, n)
        for flat in rng.choice(value.size, size=min(4, value.size), replace=False):
            idx = np.unravel_index(flat, value.shape)
            if n == "L":  # make sure L's checked entries include a row that is actually read
                idx = (words[int(flat) % (len(words) - 1)], idx[1])
            plus, minus = value.copy(), value.copy()
            plus[idx] += eps
            minus[idx] -= eps
            E_plus = forward(dataclasses.replace(params, **{n: plus}), words, nonlinearity, form).E
            E_minus = forward(dataclasses.replace(params, **{n: minus}), words, nonlinearity, form).E
            numeric = (E_plus - E_minus) / (2 * eps)
            assert getattr(grads, "d" + n)[idx] == pytest.approx(numeric, rel=1e-6, abs=1e-8), (n, idx)


@pytest.mark.parametrize("form", FORMS)
def test_repeated_words_accumulate_into_their_embedding_row(form):
    params = _params(3)
    words = [2, 2, 5, 2, 2, 0, 2]  # word 2 read at 4 steps; 0 and 5 read once; 1, 3, 4, 6 never read
    cache = forward(params, words, "tanh", form)
    grads = backward(params, cache)
    _, _, expected = _torch_oracle(params, words, "tanh", form)
    np.testing.assert_allclose(grads.dL, expected["L"], rtol=1e-10, atol=1e-12)
    assert np.all(grads.dL[[1, 3, 4, 6]] == 0.0)  # word 6 is only ever a target
    assert np.all(grads.dL[2] != 0.0)
    # the row for word 2 is the sum of ∂E/∂x_[t] over the four steps that read it
    only_first = backward(params, forward(params, words[:2], "tanh", form)).dL[2]
    assert not np.allclose(grads.dL[2], only_first)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_per_distance_terms_summed_over_t_equal_backward(nonlinearity, form):
    params = _params(4)
    words = [1, 0, 3, 6, 2, 4, 4, 5]
    cache = forward(params, words, nonlinearity, form)
    parts = [dE_dW_by_distance(params, cache, t) for t in range(1, cache.T + 1)]
    np.testing.assert_allclose(
        sum(p.total for p in parts), backward(params, cache).dW_hh, rtol=1e-10, atol=1e-12
    )
    for t, p in enumerate(parts, start=1):
        assert np.all(p.terms[0] == 0.0)
        assert p.jacobian_norms[t] == pytest.approx(1.0)
        np.testing.assert_allclose(p.total, p.terms.sum(axis=0))
        # each E_t alone, against autograd
        _, _, expected = _torch_oracle(params, words, nonlinearity, form, only_step=t)
        np.testing.assert_allclose(p.total, expected["W_hh"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_two_step_example_paths_against_autograd(nonlinearity, form):
    params = _params(5)
    words = [4, 1, 6]
    two = two_step_example(params, words, nonlinearity, form)
    _, _, full = _torch_oracle(params, words, nonlinearity, form, only_step=2)
    _, _, direct = _torch_oracle(params, words, nonlinearity, form, only_step=2, detach_before=1)
    np.testing.assert_allclose(two.total, full["W_hh"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two.through_h2, direct["W_hh"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two.through_h1, full["W_hh"] - direct["W_hh"], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_jacobian_equals_autograd_of_one_step(nonlinearity, form):
    params = _params(6)
    words = [1, 2, 3, 4, 5]
    cache = forward(params, words, nonlinearity, form)
    f = TORCH_F[nonlinearity]
    W_hh, W_hx = torch.tensor(params.W_hh), torch.tensor(params.W_hx)
    for j in range(1, cache.T + 1):
        x_j = torch.tensor(cache.x[j])

        def step(h_prev, x_j=x_j):
            if form == "standard":
                return f(W_hh @ h_prev + W_hx @ x_j)
            return W_hh @ f(h_prev) + W_hx @ x_j

        expected = torch.autograd.functional.jacobian(step, torch.tensor(cache.h[j - 1])).numpy()
        np.testing.assert_allclose(jacobian(params, cache, j), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("nonlinearity", "form"), CASES, ids=CASE_IDS)
def test_jacobian_products_obey_the_lecture_bound(nonlinearity, form):
    params = _params(7)
    words = list(np.random.default_rng(8).integers(0, params.vocab_size, size=13))
    cache = forward(params, words, nonlinearity, form)
    beta_W, beta_h = bound(params, cache)
    assert beta_W == pytest.approx(np.linalg.svd(params.W_hh, compute_uv=False).max())
    assert beta_h <= {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0}[nonlinearity]
    for t in range(cache.T + 1):
        norms = dE_dW_by_distance(params, cache, t).jacobian_norms if t else [1.0]
        for k in range(t + 1):
            measured = np.linalg.norm(jacobian_product(params, cache, t, k), 2)
            assert measured == pytest.approx(norms[k], rel=1e-12)
            assert measured <= (beta_W * beta_h) ** (t - k) * (1 + 1e-12)


def test_sigmoid_gradient_vanishes_over_twenty_steps():
    params = _params(9, D_h=8)
    params = dataclasses.replace(params, W_hh=params.W_hh / np.linalg.norm(params.W_hh, 2))  # β_W = 1
    words = list(np.random.default_rng(10).integers(0, params.vocab_size, size=22))  # T = 21
    cache = forward(params, words, "sigmoid", "standard")
    beta_W, beta_h = bound(params, cache)
    assert beta_W == pytest.approx(1.0) and beta_h <= 0.25
    norms = dE_dW_by_distance(params, cache, 21).jacobian_norms
    assert norms[1] <= (beta_W * beta_h) ** 20 <= 0.25**20  # ‖∂h_21/∂h_1‖ ≤ 9.1e-13
    assert np.all(np.diff(norms) > 0)  # the further back, the smaller
    # so the error at t = 21 barely blames W's use at step 1
    terms = dE_dW_by_distance(params, cache, 21).terms
    assert np.linalg.norm(terms[1]) < 1e-9 * np.linalg.norm(terms[21])


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 7),
    st.sampled_from(NONLINEARITIES),
    st.sampled_from(FORMS),
    st.integers(0, 2**32 - 1),
)
def test_backward_equals_autograd_for_any_small_network(V, d, D_h, T, nonlinearity, form, seed):
    rng = np.random.default_rng(seed)
    params = ElmanLMParams.random(rng, V, d, D_h, scale=float(rng.uniform(0.3, 3.0)))
    words = rng.integers(0, V, size=T + 1)
    cache = forward(params, words, nonlinearity, form)
    E, _, expected = _torch_oracle(params, words, nonlinearity, form)
    np.testing.assert_allclose(cache.E, E, rtol=1e-12)
    _assert_grads_match(backward(params, cache), expected)


@pytest.mark.parametrize("form", FORMS)
def test_relu_derivative_at_zero_is_zero_as_in_torch(form):
    params = _params(12)
    W_hx = params.W_hx.copy()
    W_hx[0] = 0.0
    params = dataclasses.replace(params, h0=np.zeros(params.hidden_size), W_hx=W_hx)
    words = [1, 2, 3, 4]
    cache = forward(params, words, "relu", form)
    assert cache.a[1 if form == "standard" else 0, 0] == 0.0  # f' is asked for at exactly 0
    _, _, expected = _torch_oracle(params, words, "relu", form)
    _assert_grads_match(backward(params, cache), expected)


@pytest.mark.parametrize("form", FORMS)
def test_softmax_is_stable_for_huge_scores(form):
    params = _params(13)
    params = dataclasses.replace(params, W_S=params.W_S * 1e4)  # scores of order 1e3 overflow a naive exp
    words = [1, 2, 3, 4, 5]
    with np.errstate(over="raise", invalid="raise"):
        cache = forward(params, words, "tanh", form)
    E, _, expected = _torch_oracle(params, words, "tanh", form)
    np.testing.assert_allclose(cache.E, E, rtol=1e-12)
    _assert_grads_match(backward(params, cache), expected, rtol=1e-9, atol=1e-9)


def test_bad_arguments_raise_project_errors():
    params = _params(11)
    with pytest.raises(RnnkitError, match="nonlinearity"):
        forward(params, [1, 2], "softplus")
    with pytest.raises(RnnkitError, match="form"):
        forward(params, [1, 2], "tanh", "elman")
    with pytest.raises(RnnkitError, match="words"):
        forward(params, [1, 7], "tanh")
    with pytest.raises(RnnkitError, match="words"):
        forward(params, [1], "tanh")
    with pytest.raises(RnnkitError, match="W_S"):
        dataclasses.replace(params, W_S=params.W_S[:, :-1])
    cache = forward(params, [1, 2, 3], "tanh")
    with pytest.raises(RnnkitError, match="j"):
        jacobian(params, cache, 0)
    with pytest.raises(RnnkitError, match="words"):
        two_step_example(params, [1, 2, 3, 4])
