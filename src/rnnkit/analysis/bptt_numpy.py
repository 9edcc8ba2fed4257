r"""The lecture's backward pass by hand: an Elman RNN language model and BPTT in plain NumPy.

Everything here is float64 NumPy, written one line per equation with the lecture's
symbols (CS224N, "Recurrent Neural Networks and Language Models"), so a reader can hold the
slides beside it. It is slow on purpose and serves as a second, independent statement of
the mathematics that the torch code in this package computes.

Two recurrences are supported. The *standard* one is the lecture's language model:

.. math::
    a_t = W^{(hh)} h_{t-1} + W^{(hx)} x_{[t]}, \quad h_t = f(a_t), \quad
    \hat{y}_t = \operatorname{softmax}(W^{(S)} h_t), \quad E_t = -\log \hat{y}_{t, w_{t+1}}

The *simple* one is the "similar but simpler RNN formulation" the lecture uses to analyse
vanishing gradients, where the nonlinearity is applied to the previous state:

.. math::
    h_t = W^{(hh)} f(h_{t-1}) + W^{(hx)} x_{[t]}, \quad
    \hat{y}_t = \operatorname{softmax}(W^{(S)} f(h_t))

In both, :math:`x_{[t]} = L_{w_t}` is the word vector of the input word, the target at
step t is the next word :math:`w_{t+1}`, and :math:`E = \sum_{t=1}^T E_t`.

Indexing follows the lecture: time runs t = 1..T, and every per-step array of a
:class:`ElmanLMCache` has T + 1 rows so that row t *is* step t. Row 0 is time 0: it holds
:math:`h_0`, and zeros where nothing happens at time 0 (no input, no prediction, no error).

.. note::
    The lecture writes :math:`\lVert \partial h_j / \partial h_{j-1} \rVert \le
    \lVert W^T \rVert \lVert \operatorname{diag}[f'(h_{j-1})] \rVert`; the transpose only
    reflects its layout of the Jacobian and leaves the spectral norm unchanged. ReLU's
    derivative at exactly 0 is taken as 0, as torch does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rnnkit.errors import RnnkitError

NONLINEARITIES = ("sigmoid", "tanh", "relu")
FORMS = ("standard", "simple")


@dataclass(frozen=True)
class ElmanLMParams:
    """The weights of the lecture's RNN language model (float64).

    Attributes:
        L: ``(|V|, d)`` word vectors; :math:`x_{[t]}` is row :math:`w_t`, used as a column.
        W_hh: ``(D_h, D_h)`` recurrent weights :math:`W^{(hh)}`.
        W_hx: ``(D_h, d)`` input weights :math:`W^{(hx)}`.
        W_S: ``(|V|, D_h)`` output (softmax) weights :math:`W^{(S)}`.
        h0: ``(D_h,)`` the hidden state at time step 0.
    """

    L: np.ndarray
    W_hh: np.ndarray
    W_hx: np.ndarray
    W_S: np.ndarray
    h0: np.ndarray

    def __post_init__(self) -> None:
        for name in ("L", "W_hh", "W_hx", "W_S", "h0"):  # float64 throughout: this is an oracle
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.L.ndim != 2 or self.h0.ndim != 1:
            raise RnnkitError(
                f"ElmanLMParams: L must be (|V|, d) and h0 (D_h,), got {self.L.shape}, {self.h0.shape}"
            )
        (V, d), D_h = self.L.shape, self.h0.shape[0]
        expected = {"L": (V, d), "W_hh": (D_h, D_h), "W_hx": (D_h, d), "W_S": (V, D_h), "h0": (D_h,)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if min(shape) < 1 or got != shape:
                raise RnnkitError(
                    f"ElmanLMParams.{name}: got shape {got}, expected {shape} "
                    f"(from L (|V|, d) = {self.L.shape} and h0 (D_h,) = {self.h0.shape})"
                )

    @property
    def vocab_size(self) -> int:
        """|V|, the number of words."""
        return self.L.shape[0]

    @property
    def hidden_size(self) -> int:
        """D_h, the size of the hidden state."""
        return self.h0.shape[0]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        scale: float = 1.0,
    ) -> ElmanLMParams:
        """Random float64 weights: each matrix ~ N(0, scale² / columns), ``L`` and ``h0`` ~ N(0, scale²/4).

        Args:
            rng: the source of randomness.
            vocab_size: |V|.
            embed_dim: d, the size of a word vector.
            hidden_size: D_h.
            scale: multiplies every standard deviation (``scale=1`` keeps activations O(1)).
        """

        def normal(rows: int, cols: int) -> np.ndarray:
            return rng.normal(0.0, scale / np.sqrt(cols), size=(rows, cols))

        return cls(
            L=rng.normal(0.0, scale / 2, size=(vocab_size, embed_dim)),
            W_hh=normal(hidden_size, hidden_size),
            W_hx=normal(hidden_size, embed_dim),
            W_S=normal(vocab_size, hidden_size),
            h0=rng.normal(0.0, scale / 2, size=hidden_size),
        )


@dataclass(frozen=True)
class ElmanLMGrads:
    """∂E/∂(each parameter), named as :class:`ElmanLMParams` with a leading ``d``."""

    dL: np.ndarray  # noqa: N815 (the lecture's symbols)
    dW_hh: np.ndarray  # noqa: N815 (the lecture's symbols)
    dW_hx: np.ndarray  # noqa: N815 (the lecture's symbols)
    dW_S: np.ndarray  # noqa: N815 (the lecture's symbols)
    dh0: np.ndarray


@dataclass(frozen=True)
class ElmanLMCache:
    r"""What :func:`forward` computed, indexed by time step (row t is step t, row 0 is time 0).

    Attributes:
        words: ``(T + 1,)`` word ids :math:`w_1 .. w_{T+1}`; ``words[t - 1]`` is the input at
            step t and ``words[t]`` its target.
        x: ``(T + 1, d)`` inputs :math:`x_{[t]}` (row 0 zero).
        a: ``(T + 1, D_h)`` the argument of f whose derivative gates step t's delta: the
            pre-activation :math:`a_t` in the standard form (row 0 zero); in the simple form f
            is applied to the state itself, so this *is* ``h``.
        h: ``(T + 1, D_h)`` hidden states :math:`h_0 .. h_T`.
        y_hat: ``(T + 1, |V|)`` predicted distributions :math:`\hat{y}_t` (row 0 zero).
        E_t: ``(T + 1,)`` per-step errors :math:`E_t` (entry 0 is 0).
        E: the total error :math:`E = \sum_t E_t`.
        nonlinearity: ``"sigmoid"``, ``"tanh"`` or ``"relu"``.
        form: ``"standard"`` or ``"simple"``.
    """

    words: np.ndarray
    x: np.ndarray
    a: np.ndarray
    h: np.ndarray
    y_hat: np.ndarray
    E_t: np.ndarray
    E: float
    nonlinearity: str
    form: str

    @property
    def T(self) -> int:
        """The number of time steps (predictions)."""
        return len(self.words) - 1


class JacobianBound(NamedTuple):
    """The lecture's bounds: ‖∂h_j/∂h_{j-1}‖ ≤ β_W β_h for every step j of a sequence."""

    beta_W: float  # noqa: N815 (the lecture's symbols)
    beta_h: float


class DistanceTerms(NamedTuple):
    r"""∂E_t/∂W^(hh) split by the step k where W^(hh) was used (see :func:`dE_dW_by_distance`).

    Attributes:
        total: ``(D_h, D_h)`` :math:`\partial E_t / \partial W^{(hh)}`.
        terms: ``(t + 1, D_h, D_h)``; ``terms[k]`` is the term through :math:`h_k` (``terms[0]``
            is zero: :math:`h_0` does not depend on W).
        jacobian_norms: ``(t + 1,)``; entry k is :math:`\lVert \partial h_t / \partial h_k \rVert_2`
            (entry t is 1, the identity).
    """

    total: np.ndarray
    terms: np.ndarray
    jacobian_norms: np.ndarray


class TwoStepGradient(NamedTuple):
    r""":math:`\partial E_2 / \partial W^{(hh)}` of a 2-step RNN as the sum of its two paths."""

    through_h2: np.ndarray
    through_h1: np.ndarray
    total: np.ndarray


def _f(nonlinearity: str, z: np.ndarray) -> np.ndarray:
    if nonlinearity == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^{-z}) without overflow for very negative z
    if nonlinearity == "tanh":
        return np.tanh(z)
    return np.maximum(z, 0.0)


def _f_prime(nonlinearity: str, z: np.ndarray) -> np.ndarray:
    if nonlinearity == "sigmoid":
        s = _f("sigmoid", z)
        return s * (1.0 - s)  # σ'(z) = σ(z)(1 - σ(z)) ≤ 1/4
    if nonlinearity == "tanh":
        return 1.0 - np.tanh(z) ** 2  # tanh'(z) = 1 - tanh²(z) ≤ 1
    return (z > 0.0).astype(np.float64)  # rect'(z) ∈ {0, 1}


def _log_softmax(theta: np.ndarray) -> np.ndarray:
    shifted = theta - theta.max()  # subtracting the max changes nothing but keeps exp from overflowing
    return shifted - np.log(np.exp(shifted).sum())


def _check_choices(nonlinearity: str, form: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise RnnkitError(f"nonlinearity: got {nonlinearity!r}, expected one of {NONLINEARITIES}")
    if form not in FORMS:
        raise RnnkitError(f"form: got {form!r}, expected one of {FORMS}")


def _check_step(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise RnnkitError(f"{name}: got {value}, expected a time step in {low}..{high}")


def forward(
    params: ElmanLMParams, words, nonlinearity: str = "sigmoid", form: str = "standard"
) -> ElmanLMCache:
    r"""Run the RNN language model over ``words`` and score every next word.

    Standard form (the lecture's language model), for t = 1..T:

    .. math::
        a_t = W^{(hh)} h_{t-1} + W^{(hx)} x_{[t]}, \quad h_t = f(a_t), \quad
        \hat{y}_t = \operatorname{softmax}(W^{(S)} h_t), \quad E_t = -\log \hat{y}_{t, w_{t+1}}

    Simple form (the vanishing-gradient analysis):

    .. math::
        h_t = W^{(hh)} f(h_{t-1}) + W^{(hx)} x_{[t]}, \quad
        \hat{y}_t = \operatorname{softmax}(W^{(S)} f(h_t))

    Args:
        params: the weights.
        words: word ids :math:`w_1 .. w_{T+1}` (T ≥ 1): step t reads :math:`w_t` and predicts
            :math:`w_{t+1}`.
        nonlinearity: f, one of ``"sigmoid"``, ``"tanh"``, ``"relu"``.
        form: ``"standard"`` or ``"simple"``.

    Returns:
        An :class:`ElmanLMCache` with every intermediate that :func:`backward` needs, the
        per-step errors ``E_t`` and their sum ``E``.
    """
    _check_choices(nonlinearity, form)
    words = np.asarray(words)
    if words.ndim != 1 or len(words) < 2 or not np.issubdtype(words.dtype, np.integer):
        raise RnnkitError(f"words: got {words.dtype} array of shape {words.shape}, expected ≥ 2 integer ids")
    if words.min() < 0 or words.max() >= params.vocab_size:
        raise RnnkitError(
            f"words: ids must lie in 0..{params.vocab_size - 1}, got {words.min()}..{words.max()}"
        )
    L, W_hh, W_hx, W_S = params.L, params.W_hh, params.W_hx, params.W_S
    T, D_h = len(words) - 1, params.hidden_size
    x = np.zeros((T + 1, L.shape[1]))
    a = np.zeros((T + 1, D_h))
    h = np.zeros((T + 1, D_h))
    y_hat = np.zeros((T + 1, params.vocab_size))
    E_t = np.zeros(T + 1)
    h[0] = params.h0
    for t in range(1, T + 1):
        w_t, w_next = words[t - 1], words[t]  # the Python list is 0-based, the lecture's w is 1-based
        x[t] = L[w_t]  # x_[t] = column w_t of L
        if form == "standard":
            a[t] = W_hh @ h[t - 1] + W_hx @ x[t]  # a_t = W^(hh) h_{t-1} + W^(hx) x_[t]
            h[t] = _f(nonlinearity, a[t])  # h_t = f(a_t)
            theta = W_S @ h[t]  # θ_t = W^(S) h_t
        else:
            h[t] = W_hh @ _f(nonlinearity, h[t - 1]) + W_hx @ x[t]  # h_t = W^(hh) f(h_{t-1}) + W^(hx) x_[t]
            theta = W_S @ _f(nonlinearity, h[t])  # θ_t = W^(S) f(h_t)
        log_y_hat = _log_softmax(theta)
        y_hat[t] = np.exp(log_y_hat)  # ŷ_t = softmax(θ_t)
        E_t[t] = -log_y_hat[w_next]  # E_t = -log ŷ_t[w_{t+1}]
    if form == "simple":
        a = h  # f's argument is the state itself
    return ElmanLMCache(words, x, a, h, y_hat, E_t, float(E_t.sum()), nonlinearity, form)


def backward(params: ElmanLMParams, cache: ElmanLMCache) -> ElmanLMGrads:
    r"""∂E/∂(every parameter) for :math:`E = \sum_t E_t`, in one sweep from t = T down to 1.

    The lecture's "one last implementation trick": instead of back-propagating each
    :math:`E_t` separately, walk backwards once and carry the delta. The delta arriving at
    step t is the sum of what :math:`E_t` sends and what flows back from step t + 1
    (standard form; in the simple form read :math:`f(h_t)` for :math:`h_t` and
    :math:`h_t` for :math:`a_t`):

    .. math::
        \delta^{(y)}_t = \hat{y}_t - e_{w_{t+1}}, \quad
        \frac{\partial E}{\partial h_t} = W^{(S)T} \delta^{(y)}_t + W^{(hh)T} \delta_{t+1}, \quad
        \delta_t = \frac{\partial E}{\partial h_t} \circ f'(a_t)

    and each weight collects one outer product per step:
    :math:`\partial E/\partial W^{(hh)} = \sum_t \delta_t h_{t-1}^T`,
    :math:`\partial E/\partial W^{(hx)} = \sum_t \delta_t x_{[t]}^T`,
    :math:`\partial E/\partial W^{(S)} = \sum_t \delta^{(y)}_t h_t^T`,
    :math:`\partial E/\partial L_{w} = \sum_{t: w_t = w} W^{(hx)T} \delta_t`.

    Args:
        params: the weights :func:`forward` used.
        cache: what :func:`forward` returned.

    Returns:
        An :class:`ElmanLMGrads`.
    """
    L, W_hh, W_hx, W_S = params.L, params.W_hh, params.W_hx, params.W_S
    f, simple = cache.nonlinearity, cache.form == "simple"
    x, a, h, words, T = cache.x, cache.a, cache.h, cache.words, cache.T
    dW_hh, dW_hx, dW_S = np.zeros_like(W_hh), np.zeros_like(W_hx), np.zeros_like(W_S)
    dx = np.zeros_like(x)  # ∂E/∂x_[t], scattered into L after the sweep
    delta_next = np.zeros(params.hidden_size)  # δ_{T+1} = 0: nothing comes back from beyond the sequence
    for t in range(T, 0, -1):
        delta_y = cache.y_hat[t].copy()
        delta_y[words[t]] -= 1.0  # δ^(y)_t = ∂E_t/∂θ_t = ŷ_t - e_{w_{t+1}}
        out_t = _f(f, h[t]) if simple else h[t]  # what W^(S) reads: f(h_t) (simple) or h_t (standard)
        in_t = _f(f, h[t - 1]) if simple else h[t - 1]  # what W^(hh) reads: f(h_{t-1}) or h_{t-1}
        dW_S += np.outer(delta_y, out_t)  # ∂E_t/∂W^(S) = δ^(y)_t h_t^T
        dE_dout = W_S.T @ delta_y + W_hh.T @ delta_next  # ∂E/∂h_t = W^(S)T δ^(y)_t + W^(hh)T δ_{t+1}
        delta = dE_dout * _f_prime(f, a[t])  # δ_t = ∂E/∂h_t ∘ f'(a_t)
        dW_hh += np.outer(delta, in_t)  # ∂E/∂W^(hh) += δ_t h_{t-1}^T
        dW_hx += np.outer(delta, x[t])  # ∂E/∂W^(hx) += δ_t x_[t]^T
        dx[t] = W_hx.T @ delta  # ∂E/∂x_[t] = W^(hx)T δ_t
        delta_next = delta
    dh0 = W_hh.T @ delta_next  # ∂E/∂h_0 = W^(hh)T δ_1 (standard)
    if simple:
        dh0 = dh0 * _f_prime(f, h[0])  # ∂E/∂h_0 = f'(h_0) ∘ W^(hh)T δ_1, since h_1 reads f(h_0)
    dL = np.zeros_like(L)
    np.add.at(dL, words[:-1], dx[1:])  # a word read at several steps collects every step's ∂E/∂x_[t]
    return ElmanLMGrads(dL=dL, dW_hh=dW_hh, dW_hx=dW_hx, dW_S=dW_S, dh0=dh0)


def jacobian(params: ElmanLMParams, cache: ElmanLMCache, j: int) -> np.ndarray:
    r"""The Jacobian :math:`\partial h_j / \partial h_{j-1}` as a ``(D_h, D_h)`` matrix.

    .. math::
        \text{standard: } \frac{\partial h_j}{\partial h_{j-1}}
        = \operatorname{diag}[f'(a_j)]\, W^{(hh)},
        \qquad
        \text{simple: } \frac{\partial h_j}{\partial h_{j-1}} = W^{(hh)} \operatorname{diag}[f'(h_{j-1})]

    Args:
        params: the weights :func:`forward` used.
        cache: what :func:`forward` returned.
        j: the step, 1..T.
    """
    _check_step("j", j, 1, cache.T)
    if cache.form == "standard":
        return _f_prime(cache.nonlinearity, cache.a[j])[:, None] * params.W_hh
    return params.W_hh * _f_prime(cache.nonlinearity, cache.h[j - 1])[None, :]


def jacobian_product(params: ElmanLMParams, cache: ElmanLMCache, t: int, k: int) -> np.ndarray:
    r""":math:`\partial h_t / \partial h_k = \prod_{j=k+1}^{t} \partial h_j / \partial h_{j-1}`.

    The product is ordered with j = t on the left, j = k + 1 on the right (the chain rule
    from :math:`h_t` back to :math:`h_k`); it is the identity when k = t.

    Args:
        params: the weights :func:`forward` used.
        cache: what :func:`forward` returned.
        t: the later step, 0..T.
        k: the earlier step, 0..t.
    """
    _check_step("t", t, 0, cache.T)
    _check_step("k", k, 0, t)
    product = np.eye(params.hidden_size)
    for j in range(t, k, -1):
        product = product @ jacobian(params, cache, j)
    return product


def bound(params: ElmanLMParams, cache: ElmanLMCache) -> JacobianBound:
    r"""The lecture's β's: the spectral norm of W^(hh) and the largest |f'| along the sequence.

    .. math::
        \beta_W = \lVert W^{(hh)} \rVert_2, \qquad
        \beta_h = \max_j \lVert \operatorname{diag}[f'(\cdot)] \rVert_2

    With them, :math:`\lVert \partial h_j / \partial h_{j-1} \rVert \le \beta_W \beta_h` for every
    j = 1..T, and so :math:`\lVert \partial h_t / \partial h_k \rVert \le (\beta_W \beta_h)^{t-k}`
    [Bengio et al. 1994]. :math:`\beta_h` is the largest :math:`|f'|` over the arguments the
    sequence actually used (:math:`a_1..a_T` standard, :math:`h_0..h_{T-1}` simple), never more
    than 1/4 for the sigmoid and 1 for tanh and ReLU.

    Args:
        params: the weights :func:`forward` used.
        cache: what :func:`forward` returned.
    """
    args = cache.a[1:] if cache.form == "standard" else cache.h[:-1]
    beta_W = float(np.linalg.norm(params.W_hh, 2))  # spectral norm: the largest singular value
    beta_h = float(np.abs(_f_prime(cache.nonlinearity, args)).max())  # ‖diag v‖_2 = max_i |v_i|
    return JacobianBound(beta_W=beta_W, beta_h=beta_h)


def dE_dW_by_distance(params: ElmanLMParams, cache: ElmanLMCache, t: int) -> DistanceTerms:
    r"""∂E_t/∂W^(hh) by the lecture's "less efficient formulation useful for analysis".

    .. math::
        \frac{\partial E_t}{\partial W} = \sum_{k=1}^{t}
        \frac{\partial E_t}{\partial y_t} \frac{\partial y_t}{\partial h_t}
        \frac{\partial h_t}{\partial h_k} \frac{\partial h_k}{\partial W},
        \qquad
        \frac{\partial h_t}{\partial h_k} = \prod_{j=k+1}^{t} \frac{\partial h_j}{\partial h_{j-1}}

    with every :math:`\partial h_t / \partial h_k` built as an explicit matrix, and
    :math:`\partial h_k / \partial W` the "immediate" derivative that holds
    :math:`h_{k-1}` fixed. Term k is how much the error at t blames W's use at step k;
    its size falls with the distance t - k as the Jacobian product shrinks (vanishing) or
    grows (exploding). Summed over t = 1..T it equals :func:`backward`'s ``dW_hh``.

    Args:
        params: the weights :func:`forward` used.
        cache: what :func:`forward` returned.
        t: the error's step, 1..T.

    Returns:
        A :class:`DistanceTerms`: the total, the term for each k, and
        :math:`\lVert \partial h_t / \partial h_k \rVert_2` for each k = 0..t.
    """
    _check_step("t", t, 1, cache.T)
    f, simple, h, a = cache.nonlinearity, cache.form == "simple", cache.h, cache.a
    delta_y = cache.y_hat[t].copy()
    delta_y[cache.words[t]] -= 1.0  # ∂E_t/∂θ_t = ŷ_t - e_{w_{t+1}}
    dEt_dht = params.W_S.T @ delta_y  # ∂E_t/∂y_t ∂y_t/∂h_t (standard: θ_t = W^(S) h_t)
    if simple:
        dEt_dht = dEt_dht * _f_prime(f, h[t])  # simple: θ_t = W^(S) f(h_t)
    D_h = params.hidden_size
    terms = np.zeros((t + 1, D_h, D_h))
    norms = np.zeros(t + 1)
    dht_dhk = np.eye(D_h)  # ∂h_t/∂h_t = I
    for k in range(t, 0, -1):
        norms[k] = np.linalg.norm(dht_dhk, 2)
        dEt_dhk = dht_dhk.T @ dEt_dht  # (∂E_t/∂h_t ∂h_t/∂h_k)^T
        if simple:  # h_k = W f(h_{k-1}) + ...: ∂h_k/∂W_ab = e_a f(h_{k-1})_b
            terms[k] = np.outer(dEt_dhk, _f(f, h[k - 1]))
        else:  # h_k = f(W h_{k-1} + ...): ∂h_k/∂W_ab = e_a f'(a_k)_a h_{k-1,b}
            terms[k] = np.outer(dEt_dhk * _f_prime(f, a[k]), h[k - 1])
        dht_dhk = dht_dhk @ jacobian(params, cache, k)  # ∂h_t/∂h_{k-1} = ∂h_t/∂h_k ∂h_k/∂h_{k-1}
    norms[0] = np.linalg.norm(dht_dhk, 2)
    return DistanceTerms(total=terms.sum(axis=0), terms=terms, jacobian_norms=norms)


def two_step_example(
    params: ElmanLMParams, words, nonlinearity: str = "sigmoid", form: str = "standard"
) -> TwoStepGradient:
    r"""The lecture's exercise: :math:`\partial E_2 / \partial W^{(hh)}` for an RNN with 2 time steps.

    W is used twice on the way to :math:`E_2`: at step 2 (directly in :math:`h_2`) and at
    step 1 (in :math:`h_1`, which :math:`h_2` reads). The chain rule adds the two paths
    (standard form shown; the simple form reads :math:`f(h_{k-1})` for :math:`h_{k-1}`):

    .. math::
        \frac{\partial E_2}{\partial W}
        = \underbrace{\frac{\partial E_2}{\partial h_2}
          \frac{\partial h_2}{\partial W}}_{h_1 \text{ held fixed}}
        + \frac{\partial E_2}{\partial h_2} \frac{\partial h_2}{\partial h_1}
          \frac{\partial h_1}{\partial W}

    Args:
        params: the weights.
        words: three word ids :math:`w_1, w_2, w_3`; :math:`E_2` is the error predicting :math:`w_3`.
        nonlinearity: f, one of ``"sigmoid"``, ``"tanh"``, ``"relu"``.
        form: ``"standard"`` or ``"simple"``.

    Returns:
        A :class:`TwoStepGradient`: the path through :math:`h_2`'s own use of W, the path
        through :math:`h_1`, and their sum.
    """
    if len(words) != 3:
        raise RnnkitError(f"words: got {len(words)} ids, expected 3 (w_1, w_2 and the target w_3)")
    cache = forward(params, words, nonlinearity, form)
    f, h, a, W_hh = nonlinearity, cache.h, cache.a, params.W_hh
    delta_y = cache.y_hat[2].copy()
    delta_y[cache.words[2]] -= 1.0  # ∂E_2/∂θ_2 = ŷ_2 - e_{w_3}
    if form == "standard":
        delta_2 = (params.W_S.T @ delta_y) * _f_prime(f, a[2])  # ∂E_2/∂a_2, a_2 = W h_1 + W^(hx) x_2
        through_h2 = np.outer(delta_2, h[1])  # ∂a_2/∂W with h_1 fixed: δ_2 h_1^T
        delta_1 = (W_hh.T @ delta_2) * _f_prime(f, a[1])  # ∂E_2/∂a_1 = f'(a_1) ∘ W^T δ_2 (through ∂h_2/∂h_1)
        through_h1 = np.outer(delta_1, h[0])  # ∂a_1/∂W: δ_1 h_0^T
    else:
        delta_2 = (params.W_S.T @ delta_y) * _f_prime(f, h[2])  # ∂E_2/∂h_2, ŷ_2 = softmax(W^(S) f(h_2))
        through_h2 = np.outer(delta_2, _f(f, h[1]))  # ∂h_2/∂W with h_1 fixed: δ_2 f(h_1)^T
        delta_1 = (W_hh.T @ delta_2) * _f_prime(f, h[1])  # ∂E_2/∂h_1 = (W diag f'(h_1))^T δ_2
        through_h1 = np.outer(delta_1, _f(f, h[0]))  # ∂h_1/∂W: δ_1 f(h_0)^T
    return TwoStepGradient(through_h2=through_h2, through_h1=through_h1, total=through_h2 + through_h1)
