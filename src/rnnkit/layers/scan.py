r"""The parallel scan of the min cells: h_t = a_t ∘ h_{t-1} + b_t for every t at once, in log space.

minGRU and minLSTM (Feng et al. 2024) read only x_t in their gates, so every step's
:math:`a_t \in (0, 1)` and :math:`b_t` are known before the recurrence runs. Unrolled,

.. math::
    h_t = e^{A_t} h_0 + \sum_{s \le t} e^{A_t - A_s} b_s, \qquad A_t = \sum_{r \le t} \log a_r,

and the sum is a log-cumulative-sum-exp of :math:`\log|b_s| - A_s` (Heinsen 2023, "Efficient
parallelization of a ubiquitous sequential computation", the method the paper uses):
products of gates never leave log space, so they neither underflow nor overflow. A
:math:`b_s` of either sign is split into its positive and negative parts, one
log-cumsum-exp each (with the paper's default candidate g every :math:`b_s > 0` and the
negative part is skipped).

On CPUs the fast path is not this scan but the same recurrence stepped in place with a
hand-written backward (:class:`LoopScan`; :class:`MinGRULoop` with minGRU's gates fused in),
which measures far faster there (:func:`best_method`).

Time is cut into chunks, the state carried from one to the next: the temporaries stay
``chunk`` steps long whatever L, and :math:`|A_t|` only grows within a chunk, which bounds
the float32 rounding of :math:`A_t + \log\sum(\cdot)` (see :func:`linear_scan`).

The backward pass is a scan too: the adjoint :math:`\bar h_t = \partial\ell/\partial h_t +
a_{t+1} \bar h_{t+1}` is the same recurrence run from the end, so training costs two scans
and a few elementwise products, not a graph through every log-cumsum-exp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.cells.mingru import MinGRUCell

CHUNK = 64
"""Default steps per chunk: of those ``bench/mincells.py --part scan`` measured (64 and 1024, for
L = 64..4096) the faster (1.0-1.4x), and the smaller float32 bound (:func:`linear_scan`)."""


def _scan(log_a: Tensor, b: Tensor, h0: Tensor, chunk: int) -> Tensor:
    """The forward recurrence, no autograd: (L, ...) log a and b, (...) h0 -> (L, ...) h."""
    out = torch.empty_like(b)
    h = h0
    for start in range(0, b.shape[0], chunk):
        A = log_a[start : start + chunk].cumsum(0)
        bb = b[start : start + chunk]
        log_mag = bb.abs().log_() - A  # log|b_s| - A_s; -inf where b_s = 0 (padding)
        part = torch.where(bb > 0, log_mag, -math.inf).logcumsumexp(0).add_(A).exp_()
        if bool((bb < 0).any()):
            part -= torch.where(bb < 0, log_mag, -math.inf).logcumsumexp(0).add_(A).exp_()
        h = out[start : start + chunk].copy_(part.addcmul_(A.exp(), h))[-1]
    return out


class LinearScan(torch.autograd.Function):
    """:func:`linear_scan` with its adjoint as a second, reversed scan."""

    @staticmethod
    def forward(ctx, log_a: Tensor, b: Tensor, h0: Tensor, chunk: int) -> Tensor:
        h = _scan(log_a, b, h0, chunk)
        ctx.save_for_backward(log_a, h0, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):
        log_a, h0, h = ctx.saved_tensors
        # h̄_t = grad_t + a_{t+1} h̄_{t+1}: the forward scan on reversed time, where step r
        # (= L-1-t) multiplies by a_{t+1}; nothing flows into the last step from beyond.
        log_a_next = torch.cat([log_a[1:], log_a.new_zeros(1, *log_a.shape[1:])])
        adjoint = _scan(log_a_next.flip(0), grad_h.flip(0), torch.zeros_like(h0), ctx.chunk).flip(0)
        a = log_a.exp()
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
        grad_log_a = adjoint * h_prev * a  # ∂h_t/∂log a_t = a_t h_{t-1}
        grad_h0 = adjoint[0] * a[0]
        return grad_log_a, adjoint, grad_h0, None


def linear_scan(log_a: Tensor, b: Tensor, h0: Tensor, chunk: int = CHUNK) -> Tensor:
    r"""Every :math:`h_t = a_t \circ h_{t-1} + b_t`, t = 1..L, from :math:`\log a_t` and :math:`b_t`.

    Args:
        log_a: (L, ...) the log of each step's decay, ≤ 0 for the min cells (0 freezes the state).
        b: (L, ...) each step's input, any sign.
        h0: (...) the state before the first step.
        chunk: steps per chunk (a positive integer); the result does not depend on it
            beyond rounding.

    Returns:
        (L, ...) the states :math:`h_1 \dots h_L`.

    .. note::
        Precision: within a chunk the result is :math:`\exp(A_t + \log\Sigma_t)` with
        :math:`\log\Sigma_t \approx -A_t`, so float32 loses about
        :math:`\epsilon\,|A_t| \le \epsilon \cdot \text{chunk} \cdot \max_t|\log a_t|`
        relative to the scale of :math:`h` (ε = 2⁻²⁴); chunks keep that bounded whatever L.
        The sequential loop's own rounding is of order ε per step. Float64 agrees with the
        step-by-step loop to ~1e-13.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    return LinearScan.apply(log_a, b, h0, chunk)


class LoopScan(torch.autograd.Function):
    """The same recurrence stepped in place, one fused multiply-add per step, forward and back.

    No log space and no graph per step: the forward writes h_t = a_t h_{t-1} + b_t into one
    preallocated (L, ...) tensor, the backward runs the adjoint h̄_t = grad_t + a_{t+1} h̄_{t+1}
    the same way. Every element is read and written a constant, small number of times, and
    the rounding is the step-by-step loop's; where one step's ops are large enough to hide
    their dispatch (CPUs), this beats the log-space scan (``bench/mincells.py``).
    """

    @staticmethod
    def forward(ctx, log_a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        a = log_a.exp()
        h = torch.empty_like(b)
        prev = h0
        for t in range(b.shape[0]):
            prev = torch.addcmul(b[t], a[t], prev, out=h[t])
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):
        a, h0, h = ctx.saved_tensors
        adjoint = torch.empty_like(grad_h)
        later = None
        for t in range(grad_h.shape[0] - 1, -1, -1):
            if later is None:
                later = adjoint[t].copy_(grad_h[t])
            else:
                later = torch.addcmul(grad_h[t], a[t + 1], later, out=adjoint[t])
        h_prev = torch.cat([h0.unsqueeze(0).expand_as(h[:1]), h[:-1]])
        grad_log_a = adjoint * h_prev * a
        return grad_log_a, adjoint, adjoint[0] * a[0]


def loop_scan(log_a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    r"""Every :math:`h_t = a_t \circ h_{t-1} + b_t` as :func:`linear_scan`, stepped in place
    (:class:`LoopScan`): the CPU's fast path."""
    return LoopScan.apply(log_a, b, h0)


class MinGRULoop(torch.autograd.Function):
    r"""A minGRU layer's gates, candidate and recurrence in one function with its own backward.

    The loop method of :class:`LoopScan`, with minGRU's equations around it written out so
    that autograd keeps no graph of a dozen elementwise ops over (L, N, H): forward
    :math:`z_t = \sigma(k_t)`, :math:`a_t = 1 - z_t = \sigma(-k_t)`,
    :math:`\tilde h_t = g(v_t)` (or :math:`v_t`), :math:`b_t = z_t \tilde h_t`, then the loop;
    backward, from the adjoint :math:`\bar h_t`:
    :math:`\bar k_t = (\bar h_t \tilde h_t - \bar h_t h_{t-1})\, z_t a_t` and
    :math:`\bar v_t = \bar h_t z_t\, g'(v_t)`, with :math:`g'(v) = 1` for :math:`v \ge 0` and
    :math:`\sigma(v)(1 - \sigma(v)) = \tilde h (1 - \tilde h)` below.
    """

    @staticmethod
    def forward(ctx, projected: Tensor, h0: Tensor, mask: Tensor | None, positive: bool) -> Tensor:
        k, v = projected.chunk(2, dim=-1)
        z, a = torch.sigmoid(k), torch.sigmoid(-k)
        h_tilde = torch.where(v >= 0, v + 0.5, torch.sigmoid(v)) if positive else v
        b = z * h_tilde
        if mask is not None:  # padding: a = 1, b = 0 keep the state
            a, b = a.masked_fill(~mask, 1.0), b.masked_fill_(~mask, 0.0)
        h = torch.empty_like(b)
        prev = h0
        for t in range(b.shape[0]):
            prev = torch.addcmul(b[t], a[t], prev, out=h[t])
        ctx.save_for_backward(z, a, h_tilde, h0, h, mask, v >= 0 if positive else None)
        ctx.positive = positive
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor):
        z, a, h_tilde, h0, h, mask, nonnegative = ctx.saved_tensors
        adjoint = torch.empty_like(grad_h)
        later = adjoint[-1].copy_(grad_h[-1])
        for t in range(grad_h.shape[0] - 2, -1, -1):
            later = torch.addcmul(grad_h[t], a[t + 1], later, out=adjoint[t])
        grad_h0 = adjoint[0] * a[0]
        if mask is not None:  # a and b are constants at padded steps
            adjoint = adjoint.masked_fill(~mask, 0.0)
        h_prev = torch.cat([h0.unsqueeze(0).expand_as(h[:1]), h[:-1]])
        grad_b = adjoint * z  # ∂b/∂h~ = z
        grad_k = (adjoint * h_tilde).sub_(adjoint * h_prev).mul_(z).mul_(a)
        if ctx.positive:
            grad_b = grad_b * torch.where(nonnegative, 1.0, h_tilde * (1 - h_tilde))
        return torch.cat([grad_k, grad_b], dim=-1), grad_h0, None, None


def sequential_scan(log_a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The same recurrence one step at a time (the oracle, and the baseline ``bench/mincells.py`` times)."""
    a, h, out = log_a.exp(), h0, []
    for t in range(b.shape[0]):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


METHODS = ("log", "loop")
"""How :func:`scan_direction` solves the recurrence: the log-space parallel scan
(:func:`linear_scan`) or the in-place loop (:func:`loop_scan`)."""


def best_method(device: torch.device) -> str:
    """The method that wins on ``device``, as ``bench/mincells.py`` measures it.

    On CPUs the in-place loop: 5-12x faster than the log-space scan for L = 64..4096
    (N = 20, H = 128, forward and backward, 1 thread; ``bench/mincells.py --part scan``),
    since one step's multiply-add already fills the cores and the scan's exp/log/
    log-cumsum-exp passes cost far more than they parallelise. Elsewhere (GPUs) the parallel
    scan, whose L steps are not L kernel launches: the method the paper measured (not yet
    measured here: no GPU was lent).
    """
    return "loop" if device.type == "cpu" else "log"


def scan_direction(
    cell: RecurrentCell,
    x: Tensor,
    h0: Tensor,
    p: dict[str, Tensor],
    mask: Tensor | None,
    method: str | None = None,
    chunk: int = CHUNK,
) -> tuple[Tensor, Tensor]:
    """One direction of a min cell over ``x`` (L, N, H_in): the layer's output (zero at padded
    steps) and its final state (at each sequence's last real step).

    The kernel ``fast.own_layer`` calls for these cells: one GEMM for every step's gates,
    the cell's :meth:`coefficients`, then the recurrence by ``method`` (``"log"`` or
    ``"loop"``; None: :func:`best_method` for the device). A padded step has
    :math:`a_t = 1, b_t = 0`, so it leaves the state as it was.
    """
    projected = F.linear(x, p["weight_ih"], p.get("bias_ih"))
    method = best_method(x.device) if method is None else method
    if method == "loop" and isinstance(cell, MinGRUCell):
        h = MinGRULoop.apply(projected, h0, mask, cell.candidate == "g")
    else:
        log_a, b = cell.coefficients(projected)
        if mask is not None:
            log_a, b = log_a.masked_fill(~mask, 0.0), b.masked_fill(~mask, 0.0)
        h = linear_scan(log_a, b, h0, chunk) if method == "log" else loop_scan(log_a, b, h0)
    if mask is None:
        return h, h[-1]
    last = (mask.sum(0, keepdim=True) - 1).expand(1, *h.shape[1:])
    return h.masked_fill(~mask, 0.0), h.gather(0, last)[0]
