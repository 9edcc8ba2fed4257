r"""One step of a recorded layer, backwards: the vector-Jacobian products the sweep carries rows through.

For step k of one layer-direction, given R rows of gradients on its new state (h_k, and
c_k for the LSTM), :meth:`Steps.back` gives the rows' gradients on its previous state and,
if asked, on its input x_k. The cells' own formulas are written out here as
:mod:`rnnkit.layers.kernels` writes them for its backward sweep: every coefficient that
does not depend on the incoming gradient is computed once for all steps from the recorded
forward pass, so a step costs a few element-wise products and one matrix product per
weight, for the live rows only; nothing is recomputed forwards. A cell of another kind is
differentiated by autograd, one step at a time (:class:`AutogradSteps`). The tests hold both
to :func:`rnnkit.analysis.gradient_flow.gradient_matrix`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import LSTMState, RecurrentCell
from rnnkit.cells.elman import ElmanCell, derivative
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell

Call = tuple[Tensor, Any, Any]
"""One recorded cell call: its input x (N, H_in), the state it received and the state it returned."""


def fields(state: Any) -> list[Tensor]:
    """A state's tensors: its named tuple's fields ([h, c] for the LSTM), or [h]."""
    return [state] if isinstance(state, Tensor) else list(state)


def _stacked(calls: list[Call]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Sequence 0's x, previous state and new state at every step (in run order), detached: (L, ·)."""
    x = torch.cat([c[0].detach()[:1] for c in calls])
    previous = [torch.cat(f) for f in zip(*([t.detach()[:1] for t in fields(c[1])] for c in calls))]
    new = [torch.cat(f) for f in zip(*([t.detach()[:1] for t in fields(c[2])] for c in calls))]
    return x, previous, new


class Steps:
    """The backward steps of one recorded layer-direction (subclasses: one per cell kind)."""

    state_fields = 1
    """Tensors in the cell's state: 2 for the LSTM's (h, c)."""

    dtype = torch.float64
    """The gradients' type: each step takes and gives them in it, on the CPU."""

    def back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        """The rows' gradients (R, H_in) on step ``step``'s input (None unless ``want_input``) and
        on the state it received, from theirs ``grads`` on the state it returned."""
        raise NotImplementedError


class Weights:
    """A cell's W_ih and W_hh, side by side too: one product gives the gradients on x and h."""

    def __init__(self, cell: RecurrentCell, dtype: torch.dtype) -> None:
        self.W_ih, self.W_hh = (
            cell.weight_ih.detach().to("cpu", dtype),
            cell.weight_hh.detach().to("cpu", dtype),
        )
        self.both = torch.cat([self.W_ih, self.W_hh], 1)

    def back(self, d: Tensor, want_input: bool) -> tuple[Tensor | None, Tensor]:
        """(d W_ih or None, d W_hh) of the gradients ``d`` on the pre-activations."""
        if not want_input:
            return None, d @ self.W_hh
        dx, dh = (d @ self.both).split([self.W_ih.shape[1], self.W_hh.shape[1]], -1)
        return dx, dh


class LSTMSteps(Steps):
    """i, f, g, o = σ, σ, tanh, σ of W_ih x + W_hh h_(k-1) + b; c_k = f c_(k-1) + i g; h_k = o tanh(c_k)."""

    state_fields = 2

    def __init__(self, cell: LSTMCell, calls: list[Call], dtype: torch.dtype) -> None:
        x, (h_prev, c_prev), (_, c) = _stacked(calls)
        with torch.no_grad():
            gates = cell.gate_values(x, LSTMState(h_prev, c_prev))
        i, f, o, g = (gates[k] for k in ("input", "forget", "output", "candidate"))
        tanh_c = torch.tanh(c)
        # dc = dc_next + dh Q;  d(pre_i | pre_f | pre_g | pre_o) = (dc | dc | dc | dh) P;  dc_prev = dc f
        Q = o * (1 - tanh_c * tanh_c)
        # torch's gate order i|f|g|o: the first three read dc, the last dh
        P = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], 1)
        self.Q, self.f, self.P = (t.to("cpu", dtype) for t in (Q, f, P))
        self.weights = Weights(cell, dtype)

    def back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        dh, dc_next = grads
        dc = torch.addcmul(dc_next, dh, self.Q[step])
        d = (torch.stack([dc, dc, dc, dh], 1) * self.P[step]).flatten(1)
        dx, dh_prev = self.weights.back(d, want_input)
        return dx, [dh_prev, dc * self.f[step]]


class ElmanSteps(Steps):
    """h_k = f(W_hh h_(k-1) + W_ih x_k + b), f' read from h_k as the diagnostics read it."""

    def __init__(self, cell: ElmanCell, calls: list[Call], dtype: torch.dtype) -> None:
        _, _, (h,) = _stacked(calls)
        self.D = derivative(h, cell.nonlinearity).to("cpu", dtype)
        self.weights = Weights(cell, dtype)

    def back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        dx, dh_prev = self.weights.back(grads[0] * self.D[step], want_input)
        return dx, [dh_prev]


class GRUSteps(Steps):
    """r, z = σ(W x + U h_(k-1) + b); n = tanh(W_n x + r (U_n h_(k-1) + b_n)) (or, reset before,
    tanh(W_n x + U_n (r h_(k-1)) + b_n)); h_k = z h_(k-1) + (1 - z) n."""

    def __init__(self, cell: GRUCell, calls: list[Call], dtype: torch.dtype) -> None:
        x, (h_prev,), _ = _stacked(calls)
        W_ih, W_hh = cell.weight_ih.detach(), cell.weight_hh.detach()
        b_ih = cell.bias_ih.detach() if cell.bias else None
        b_hh = cell.bias_hh.detach() if cell.bias else None
        H = cell.hidden_size
        self.reset_after, self.W_ih, self.W_hh = (
            cell.reset_after,
            W_ih.to("cpu", dtype),
            W_hh.to("cpu", dtype),
        )
        with torch.no_grad():
            x_r, x_z, x_n = F.linear(x, W_ih, b_ih).chunk(3, -1)
            h_r, h_z, h_n = F.linear(h_prev, W_hh, b_hh).chunk(3, -1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            if self.reset_after:
                n = torch.tanh(x_n + r * h_n)
            else:
                n = torch.tanh(
                    x_n + F.linear(r * h_prev, W_hh[2 * H :], None if b_hh is None else b_hh[2 * H :])
                )
        # d(pre_n) = dh A;  d(pre_z) = dh C;  dh_prev ∋ dh z;  d(pre_r) = d(r-product) B
        A, C = (1 - z) * (1 - n * n), (h_prev - n) * z * (1 - z)
        B = (h_n if self.reset_after else h_prev) * r * (1 - r)
        self.A, self.B, self.C, self.z, self.r = (t.to("cpu", dtype) for t in (A, B, C, z, r))

    def back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        dh = grads[0]
        H = dh.shape[-1]
        d_n, d_z = dh * self.A[step], dh * self.C[step]
        if self.reset_after:
            d_r = d_n * self.B[step]
            dh_prev = torch.addmm(dh * self.z[step], torch.cat([d_r, d_z, d_n * self.r[step]], -1), self.W_hh)
        else:
            d_rh = d_n @ self.W_hh[2 * H :]
            d_r = d_rh * self.B[step]
            dh_prev = torch.addmm(
                dh * self.z[step] + d_rh * self.r[step], torch.cat([d_r, d_z], -1), self.W_hh[: 2 * H]
            )
        return (torch.cat([d_r, d_z, d_n], -1) @ self.W_ih if want_input else None), [dh_prev]


class AutogradSteps(Steps):
    """Any cell: each step run again on detached copies of its input and previous state, one copy
    per row, and differentiated by autograd (the rows' products are independent: one backward
    pass gives them all). The copies make the product the step's alone: an LSTM's c_(k-1) also
    reaches h_(k-1), and a product taken through the recorded graph would count that path twice."""

    def __init__(self, cell: RecurrentCell, calls: list[Call], dtype: torch.dtype) -> None:
        self.cell, self.calls, self.dtype = cell, calls, dtype
        self.state_fields = len(fields(calls[0][1]))

    def back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        x = self.calls[step][0]
        dx, found = self._back(step, [g.to(x.device, x.dtype) for g in grads], want_input)
        return None if dx is None else dx.to("cpu", self.dtype), [g.to("cpu", self.dtype) for g in found]

    def _back(self, step: int, grads: list[Tensor], want_input: bool) -> tuple[Tensor | None, list[Tensor]]:
        x, previous, _ = self.calls[step]
        n = grads[0].shape[0]
        x = x.detach()[:1].expand(n, -1).clone().requires_grad_(want_input)
        state = [f.detach()[:1].expand(n, -1).clone().requires_grad_(step > 0) for f in fields(previous)]
        inputs = ([x] if want_input else []) + (state if step > 0 else [])
        with torch.enable_grad():
            out = fields(self.cell(x, state[0] if isinstance(previous, Tensor) else type(previous)(*state)))
            found = list(torch.autograd.grad(out, inputs, grads, allow_unused=True)) if inputs else []
        found = [torch.zeros_like(t) if g is None else g for g, t in zip(found, inputs)]
        dx = found.pop(0) if want_input else None
        return dx, found if step > 0 else [torch.zeros_like(g) for g in grads]


STEPS: dict[type, type[Steps]] = {LSTMCell: LSTMSteps, GRUCell: GRUSteps, ElmanCell: ElmanSteps}
"""The cells whose backward step is written out here; exactly these classes (a subclass may
change the forward, so it is differentiated by autograd)."""


def steps(cell: RecurrentCell, calls: list[Call], dtype: torch.dtype = torch.float64) -> Steps:
    """The backward steps of ``calls`` (one layer-direction, in run order) of ``cell``, a
    standalone copy holding the layer's weights, carrying gradients in ``dtype`` (the
    coefficients are computed in the recording's precision on its device, then rounded to
    ``dtype`` on the CPU: products of a few hundred rows, one step at a time, are no work for
    a GPU, and the sweep's bookkeeping is numpy)."""
    made = STEPS.get(type(cell), AutogradSteps)(cell, calls, dtype)
    made.dtype = dtype
    return made
