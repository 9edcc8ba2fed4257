r"""Gradient flow through time on a real model: ||∂E_t/∂h_k||, step Jacobians, the lecture's bound, gates.

Everything here observes; nothing changes what a model's ``forward`` returns. A float64
copy of the model runs its reference path (the Python loop over the cells), a forward
hook on one layer-direction's cell records every step's input, previous state and new
state, and autograd differentiates the per-step losses

.. math::
    E_t = -\log \hat y_{t, w_{t+1}}

(a language model's; a tagger's and a classifier's are in :func:`tagger_loss` and
:func:`classifier_loss`) with respect to those recorded states. Float64, because a
sigmoid Elman network's gradient 50 steps back is about :math:`0.25^{50} \approx
10^{-30}`, near the bottom of float32's range.

A forward direction carries gradient from E_t back to earlier steps k <= t; a backward
direction (``reverse``) ran from the end, so it carries it to *later* steps k >= t: the
distance is d = t - k forward and d = k - t backward.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import RecurrentCell, hidden_of
from rnnkit.cells.elman import ElmanCell, derivative
from rnnkit.errors import RnnkitError


@dataclass
class Trace:
    """One forward pass of a probe model, recorded at every step of one layer-direction.

    ``inputs[j]`` is the cell's input x at step j (N, H_in), ``previous[j]`` the state it
    received, ``states[j]`` the state it returned (part of the autograd graph), all in
    position order (for a backward direction the reverse of the order it ran in), and
    ``losses[r]`` the per-sequence loss (N,) at step ``loss_steps[r]`` (a language model's
    E_t of predicting token t + 1 at every step t; a classifier's one loss at the step
    its direction ends on).
    """

    model: nn.Module
    index: int
    inputs: list[Tensor]
    previous: list
    states: list
    losses: Tensor
    loss_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.loss_steps:
            self.loss_steps = list(range(len(self.losses)))

    @property
    def steps(self) -> int:
        return len(self.states)

    @property
    def reverse(self) -> bool:
        """Whether this is a backward direction (it ran from the last step to the first)."""
        return self.index % self.model.rnn.num_directions == 1

    @property
    def hidden(self) -> list[Tensor]:
        """h_k at every step (for the LSTM the h of (h, c), for any named-tuple state its h)."""
        return [hidden_of(s) for s in self.states]

    @property
    def cell(self) -> RecurrentCell:
        return self.model.rnn.cells[self.index]


Loss = Callable[[nn.Module, Tensor], "Tensor | tuple[Tensor, list[int]]"]
"""Per-step losses of a probe model on ``tokens``: (R, N), or with the steps they sit at."""


def probe(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` in eval mode on the reference path: the one diagnostics run."""
    twin = copy.deepcopy(model).to(torch.float64).eval()
    twin.rnn.impl = "reference"
    return twin


def lm_loss(twin: nn.Module, tokens: Tensor) -> Tensor:
    """A language model's E_t = -log p(w_{t+1} | w_1..w_t), (L - 1, N) of tokens (L, N)."""
    logp, _ = twin.log_prob(tokens[:-1], tokens[1:])
    return -logp


def tagger_loss(chars: tuple[Tensor, Tensor, Tensor] | None = None, targets: Tensor | None = None) -> Loss:
    """A tagger's E_t = -log softmax(e_t)[y_t] at every word t of words (L, N).

    ``y`` are ``targets`` (L, N) (gold tags) or else the tagger's own best tags; for a CRF
    tagger the per-word softmax of its scores e_t (the CRF's loss is one number per
    sentence). ``chars``: the character features' input, for taggers that read them.
    """

    def loss(twin: nn.Module, words: Tensor) -> Tensor:
        L, N = words.shape
        lengths = torch.full((N,), L, dtype=torch.long, device=words.device)
        logp = torch.log_softmax(twin(words, lengths, chars), -1)
        y = logp.detach().argmax(-1) if targets is None else targets
        return -logp.gather(-1, y[..., None])[..., 0]

    return loss


def classifier_loss(targets: Tensor | None = None) -> Loss:
    """A classifier's one loss E = -log p(y | sentence) of words (L, N), at the step where
    the observed direction ends (its final state is read there): L - 1 forward, 0 backward.

    ``y`` are ``targets`` (N,) or else the classifier's own best classes.
    """

    def loss(twin: nn.Module, words: Tensor) -> tuple[Tensor, list[int]]:
        L, N = words.shape
        logp = twin(words, torch.full((N,), L, dtype=torch.long, device=words.device))
        y = logp.detach().argmax(-1) if targets is None else targets
        return -logp.gather(-1, y[:, None]).T, [L - 1]

    return loss


def trace(model: nn.Module, tokens: Tensor, index: int | None = None, loss: Loss = lm_loss) -> Trace:
    """Run ``tokens`` (L, N) through a probe of ``model`` and record layer-direction ``index``.

    ``index`` = layer * D + direction; the default is the last layer's forward direction
    (the one a language model's output head reads). ``loss`` gives the per-step losses:
    by default a language model's, step t's predicting ``tokens[t + 1]``.
    """
    if tokens.dim() != 2 or tokens.shape[0] < 2:
        raise RnnkitError(f"tokens must be (L, N) with L >= 2, got shape {tuple(tokens.shape)}")
    twin = probe(model)
    rnn = twin.rnn
    if index is None:
        index = (rnn.num_layers - 1) * rnn.num_directions
    if not 0 <= index < len(rnn.cells):
        raise RnnkitError(f"layer-direction index must be in [0, {len(rnn.cells)}), got {index}")
    inputs, previous, states = [], [], []

    def record(module, args, output) -> None:
        inputs.append(args[0])
        previous.append(args[1])
        states.append(output)

    device = next(twin.parameters()).device
    tokens = tokens.to(device)
    handle = rnn.cells[index].register_forward_hook(record)
    try:
        losses = loss(twin, tokens)
    finally:
        handle.remove()
    losses, at = losses if isinstance(losses, tuple) else (losses, [])
    if index % rnn.num_directions == 1:  # the backward direction ran from the end
        inputs, previous, states = inputs[::-1], previous[::-1], states[::-1]
        at = [len(states) - 1 - t for t in at]  # a classifier's loss: where this direction ends
    return Trace(twin, index, inputs, previous, states, losses, at)


def layer_gradients(model: nn.Module, tokens: Tensor, loss: Loss = lm_loss) -> list[dict]:
    """For every layer-direction: ||∂E/∂h_k|| of the whole input's loss E = Σ_t E_t at each
    step k (mean over sequences), and the states' norms; where a gradient explodes (or a
    state stops being finite) is the layer and time step to look at.

    Returns one dict per layer-direction: ``layer``, ``direction``, ``gradient`` (per
    step), ``state_norm`` (per step), ``peak_step`` (the step of the largest gradient) and
    ``first_nonfinite`` (the first step whose state is not finite, or None: once one is,
    the loss and so every gradient are, which says nothing about where).
    """
    out = []
    rnn = model.rnn
    for index in range(rnn.num_layers * rnn.num_directions):
        tr = trace(model, tokens, index, loss)
        grads = torch.autograd.grad(tr.losses.sum(), tr.hidden, allow_unused=True)
        gradient = np.array([0.0 if g is None else g.norm(dim=-1).mean().item() for g in grads])
        states = np.array([h.detach().norm(dim=-1).mean().item() for h in tr.hidden])
        # the states themselves (their norms overflow sooner); a non-finite loss makes every gradient so
        bad = [k for k, h in enumerate(tr.hidden) if not torch.isfinite(h).all()]
        finite = np.where(np.isfinite(gradient), gradient, -np.inf)
        out.append(
            {
                "layer": index // rnn.num_directions,
                "direction": index % rnn.num_directions,
                "gradient": gradient.tolist(),
                "state_norm": states.tolist(),
                "peak_step": int(np.argmax(finite)),
                "first_nonfinite": int(bad[0]) if len(bad) else None,
            }
        )
    return out


def gradient_matrix(tr: Trace) -> np.ndarray:
    """G[t, k] = ||∂E_t/∂h_k||, averaged over the batch's sequences, at every step k: 0 where
    E_t does not depend on h_k (k > t in a language model's forward direction, k < t in a
    backward one; in a deep bidirectional model a lower layer reaches both ways through
    the layers above). Rows of steps without a loss (a classifier's) are NaN.

    One backward pass per loss, each giving the gradient at every step.
    """
    T, hidden = tr.steps, tr.hidden
    G = np.full((T, T), np.nan)
    for row, t in enumerate(tr.loss_steps):
        grads = torch.autograd.grad(tr.losses[row].sum(), hidden, retain_graph=True, allow_unused=True)
        G[t] = [0.0 if g is None else g.norm(dim=-1).mean().item() for g in grads]
    return G


def gradient_at(tr: Trace, t: int, distances: list[int]) -> dict[int, float]:
    """||∂E_t/∂h_{t-d}|| (||∂E_t/∂h_{t+d}|| for a backward direction) for each distance d
    (mean over sequences), from one backward pass; 0 where E_t does not reach."""
    reach = tr.steps - 1 - t if tr.reverse else t
    if any(d < 0 or d > reach for d in distances):
        raise RnnkitError(f"distances must be in [0, {reach}] for step {t}, got {distances}")
    row = tr.loss_steps.index(t)
    wanted = [tr.hidden[t + d if tr.reverse else t - d] for d in distances]
    grads = torch.autograd.grad(tr.losses[row].sum(), wanted, retain_graph=True, allow_unused=True)
    return {d: (0.0 if g is None else g.norm(dim=-1).mean().item()) for d, g in zip(distances, grads)}


def by_distance(G: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Mean over t of G[t, t - d] (G[t, t + d] for a backward direction, ``reverse``), for
    d = 0 .. T-1: how the gradient falls with distance along the direction's recurrence.
    Rows without a loss (NaN) do not count; NaN at a distance no loss is that far from."""
    T = G.shape[0]
    t, k = np.indices(G.shape)
    d = (k - t) if reverse else (t - k)
    counted = (d >= 0) & ~np.isnan(G)
    sums = np.bincount(d[counted], weights=G[counted], minlength=T)
    counts = np.bincount(d[counted], minlength=T)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _flat(state) -> Tensor:
    """A state as one vector: h, or its named tuple's fields side by side ((h, c) for the LSTM)."""
    return state if isinstance(state, Tensor) else torch.cat(list(state), -1)


def step_jacobians(tr: Trace, sequence: int = 0) -> list[Tensor]:
    """∂s_j/∂s_{j-1} at every step j of one sequence: s = h, or s = (h, c) for the LSTM
    (∂s_j/∂s_{j+1} for a backward direction), in position order.

    For the LSTM the state is the pair, so its Jacobian is 2H x 2H (h and c together).
    """
    cell = tr.model.rnn.standalone_cell(tr.index)
    H = cell.hidden_size
    jacobians = []
    for x, prev in zip(tr.inputs, tr.previous):
        x_j, s = x[sequence].detach(), _flat(prev)[sequence].detach()
        kind = type(prev) if isinstance(prev, tuple) else None  # LSTMState: (h, c), rebuilt as it came

        def step(flat: Tensor, x_j: Tensor = x_j, kind: type | None = kind) -> Tensor:
            state = flat if kind is None else kind(*flat.split(H))
            return _flat(cell(x_j, state))

        jacobians.append(torch.autograd.functional.jacobian(step, s))
    return jacobians


def spectral_norms(matrices: list[Tensor]) -> np.ndarray:
    return np.array([torch.linalg.matrix_norm(m, ord=2).item() for m in matrices])


def product_norms(jacobians: list[Tensor], max_distance: int, reverse: bool = False) -> np.ndarray:
    """Mean over k of ||∂s_{k+d}/∂s_k|| = ||J_{k+d} ... J_{k+1}||, for d = 0 .. max_distance.

    ``jacobians`` in position order, as :func:`step_jacobians` gives them; ``reverse``: of a
    backward direction, whose chain runs the other way (||∂s_k/∂s_{k+d}|| = ||J_k ... J_{k+d-1}||).
    """
    if reverse:
        jacobians = jacobians[::-1]
    T = len(jacobians)
    max_distance = min(max_distance, T)
    sums, counts = np.zeros(max_distance + 1), np.zeros(max_distance + 1)
    for k in range(T):
        P = torch.eye(jacobians[0].shape[0], dtype=jacobians[0].dtype, device=jacobians[0].device)
        sums[0], counts[0] = sums[0] + 1.0, counts[0] + 1
        for d in range(1, max_distance + 1):
            if k + d > T:
                break
            P = jacobians[k + d - 1] @ P
            sums[d] += torch.linalg.matrix_norm(P, ord=2).item()
            counts[d] += 1
    return sums / np.maximum(counts, 1)


def elman_bound(tr: Trace) -> dict[str, float] | None:
    r"""The lecture's :math:`\beta_W \beta_h` for an Elman layer, None for gated cells.

    :math:`\beta_W = \|W_{hh}\|_2` and :math:`\beta_h = \max_j \|\operatorname{diag} f'(a_j)\|`
    over the recorded steps (f' read from the outputs: h(1-h), 1-h², 1[h>0]), so that
    :math:`\|\partial h_j/\partial h_{j-1}\| \le \beta_W \beta_h` at every step.
    """
    cell = tr.cell
    if not isinstance(cell, ElmanCell):
        return None
    h = torch.stack([s.detach() for s in tr.states])
    W = tr.model.rnn.layer_parameters(tr.index)["weight_hh"].detach()
    beta_W = torch.linalg.matrix_norm(W, ord=2).item()
    beta_h = derivative(h, cell.nonlinearity).abs().max().item()
    return {"beta_W": beta_W, "beta_h": beta_h, "product": beta_W * beta_h}


def log_decays(tr: Trace) -> Tensor | None:
    r"""log a_t at every step, (T, N, H) in position order, for a cell whose recurrence is
    :math:`h_t = a_t \circ h_{t-1} + b_t` with :math:`a_t` read from the input alone
    (minGRU: :math:`a_t = 1 - z_t`; minLSTM: :math:`a_t = f'_t`); None for other cells.

    Such a cell's step Jacobian is :math:`\partial h_t/\partial h_{t-1} = \operatorname{diag}(a_t)`
    (no :math:`W_{hh}`), so the gradient through time is a product of these factors, known
    exactly (:func:`diagonal_products`). In log space, from the cell's own scan
    coefficients: :math:`\log(1 - z_t) = -\text{softplus}(k_t)` stays exact where
    :math:`1 - \sigma(k_t)` rounds to 0.
    """
    cell = tr.model.rnn.standalone_cell(tr.index)
    if getattr(cell, "recurrent_weights", True) or not hasattr(cell, "coefficients"):
        return None
    with torch.no_grad():
        steps = [cell.coefficients(F.linear(x, cell.weight_ih, cell.bias_ih))[0] for x in tr.inputs]
    return torch.stack(steps).cpu()


def diagonal_products(log_a: Tensor, max_distance: int, reverse: bool = False) -> dict[str, np.ndarray]:
    r"""By distance d, the exact :math:`\|\partial h_{k+d}/\partial h_k\|_2 = \max_u
    \prod_{s=k+1}^{k+d} a_{s,u}` of a diagonal recurrence (the spectral norm of a diagonal
    matrix is its largest entry), over the same windows as :func:`product_norms`.

    ``log_a``: (T, H), one sequence's :func:`log_decays` in position order; ``reverse``: of a
    backward direction (:math:`\|\partial h_k/\partial h_{k+d}\| = \max_u \prod_{s=k}^{k+d-1}
    a_{s,u}`). Returns ``product`` (mean over k of the norm, d = 0 .. max_distance) and
    ``per_step`` (:math:`\exp` of the mean over k of :math:`\tfrac1d \log` of the norm: the
    factor the gradient keeps per step over d steps, in [0, 1]; NaN at d = 0).
    """
    log_a = log_a.to(torch.float64)
    if reverse:
        log_a = log_a.flip(0)
    T = log_a.shape[0]
    max_distance = min(max_distance, T)
    sums = torch.cat([log_a.new_zeros(1, log_a.shape[1]), log_a.cumsum(0)])  # sums[j] = Σ_{s<j} log a_s
    product, per_step = np.ones(max_distance + 1), np.full(max_distance + 1, np.nan)
    for d in range(1, max_distance + 1):
        log_norm = (sums[d:] - sums[:-d]).max(-1).values  # one per window of d consecutive steps
        product[d] = log_norm.exp().mean().item()
        per_step[d] = math.exp(log_norm.mean().item() / d)
    return {"product": product, "per_step": per_step}


def decay_summary(log_a: Tensor, max_distance: int, reverse: bool = False) -> dict:
    r"""What a diagonal recurrence's factors say about its gradient through time, for one
    sequence's ``log_a`` (T, H): :func:`diagonal_products` by distance, the largest factor
    :math:`a_{\max}` (so that :math:`\|\partial h_t/\partial h_k\| \le a_{\max}^{t-k}`,
    the counterpart of the lecture's :math:`(\beta_W \beta_h)^d`), the mean factor, and the
    unit that keeps its gradient longest with its factor per step (geometric mean over steps).
    """
    products = diagonal_products(log_a, max_distance, reverse)
    per_unit = log_a.to(torch.float64).mean(0)
    slowest = int(per_unit.argmax())
    return {
        "product_by_distance": products["product"].tolist(),
        "per_step_by_distance": [None if np.isnan(v) else float(v) for v in products["per_step"]],
        "a_max": log_a.max().exp().item(),
        "a_mean": log_a.exp().mean().item(),
        "slowest_unit": {"unit": slowest, "per_step": per_unit[slowest].exp().item()},
    }


def recurrent_spectrum(model: nn.Module, index: int) -> dict[str, dict[str, float]]:
    """Spectral radius and 2-norm of W_hh (per gate block for gated cells, in torch's order)."""
    rnn = model.rnn
    W = rnn.layer_parameters(index)["weight_hh"].detach().to(torch.float64)
    cell = rnn.cells[index]
    names = {4: ("input", "forget", "candidate", "output"), 3: ("reset", "update", "candidate")}
    blocks = dict(zip(names[cell.gates], W.chunk(cell.gates))) if cell.gates > 1 else {"W_hh": W}
    return {
        name: {
            "spectral_radius": torch.linalg.eigvals(block).abs().max().item(),
            "norm": torch.linalg.matrix_norm(block, ord=2).item(),
        }
        for name, block in blocks.items()
    }


def gate_values(tr: Trace) -> dict[str, Tensor]:
    """Each gate's value at every step, (T, N, H) on the CPU; raises for cells without gates."""
    cell = tr.model.rnn.standalone_cell(tr.index)
    if not hasattr(cell, "gate_values"):
        raise RnnkitError(
            f"gate statistics need a gated cell (gru, lstm); this layer is {type(cell).__name__}"
        )
    with torch.no_grad():
        steps = [cell.gate_values(x, prev) for x, prev in zip(tr.inputs, tr.previous)]
    return {name: torch.stack([s[name] for s in steps]).cpu() for name in steps[0] if name != "candidate"}


def saturation(values: Tensor, low: float = 0.1, high: float = 0.9) -> dict[str, np.ndarray]:
    """Per unit, the share of (step, sequence) where a gate is near 0 (< low) or near 1 (> high)."""
    flat = values.flatten(0, -2).cpu()
    return {
        "near_0": (flat < low).double().mean(0).numpy(),
        "near_1": (flat > high).double().mean(0).numpy(),
    }
