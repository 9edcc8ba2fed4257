"""The minimal GRU of Feng et al. 2024 ("Were RNNs All We Needed?"): gates from x_t alone."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.errors import RnnkitError
from rnnkit.names import CANDIDATES


def g(x: Tensor) -> Tensor:
    r"""Feng et al.'s positive activation: :math:`g(x) = x + \tfrac12` for :math:`x \ge 0`,
    :math:`\sigma(x)` below. Continuous at 0 (both are 1/2), linear above, and never zero."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def candidate_activation(name: str) -> Callable[[Tensor], Tensor] | None:
    """The candidate's activation for ``candidate=name`` (``"g"`` or ``"linear"``), checked."""
    if name not in CANDIDATES:
        raise RnnkitError(f"candidate must be one of {list(CANDIDATES)}, got {name!r}")
    return g if name == "g" else None


class MinCell(RecurrentCell):
    r"""What minGRU and minLSTM share: gates from x_t alone (no ``weight_hh``) and the
    candidate :math:`\tilde h_t` = g(W x_t + b), or W x_t + b with ``candidate="linear"``."""

    recurrent_weights = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        candidate: str = "g",
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self._activation = candidate_activation(candidate)
        self.candidate = candidate
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)

    def candidate_of(self, W_h_x: Tensor) -> Tensor:
        r""":math:`\tilde h_t` from its pre-activation :math:`W^{(h)} x_t + b_h`."""
        return W_h_x if self._activation is None else g(W_h_x)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.candidate == "g" else f", candidate={self.candidate!r}")


class MinGRUCell(MinCell):
    r"""One step of a minGRU (Feng et al. 2024, §3.1): a GRU whose gate reads only the input.

    .. math::
        z_t &= \sigma\left(W^{(z)} x_t + b_z\right) \\
        \tilde h_t &= g\left(W^{(h)} x_t + b_h\right) \\
        h_t &= (1 - z_t) \circ h_{t-1} + z_t \circ \tilde h_t

    Neither :math:`z_t` nor :math:`\tilde h_t` reads :math:`h_{t-1}`, so the recurrence is
    :math:`h_t = a_t \circ h_{t-1} + b_t` with :math:`a_t = 1 - z_t`,
    :math:`b_t = z_t \circ \tilde h_t` known for every t at once: the fast path solves it
    with a parallel scan (:mod:`rnnkit.layers.scan`); this ``forward`` is the step.

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t.
        bias: add the biases b_z and b_h (the paper's ``nn.Linear`` has them).
        candidate: ``"g"`` (default) or ``"linear"``, see the note.
        learn_initial_state: learn h_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``h_prev`` of shape ``(N, H)``.
    Outputs: ``h_t`` of shape ``(N, H)``.

    .. note::
        The candidate. §3.1.2 of the paper drops the GRU's tanh, :math:`\tilde h_t =
        \text{Linear}(x_t)` (``candidate="linear"``); its log-space implementation (the
        "additional numerical stability" version of its appendix, the one its code trains)
        applies :math:`g(x) = x + 1/2` for :math:`x \ge 0`, :math:`\sigma(x)` otherwise,
        so that every :math:`\tilde h_t > 0`. That is the default here: it is the model
        the paper's experiments ran, and with :math:`b_t > 0` the log-space scan sums
        one log-cumsum-exp instead of a positive and a negative one. Unlike the paper's
        code, :math:`h_0` is used as it is (not passed through g), so a zero initial state
        is zero as for the lecture's cells.

    .. note::
        Parameters: ``weight_ih`` stacks :math:`[W^{(z)}; W^{(h)}]` (gate order z|h) and
        ``bias_ih`` :math:`[b_z; b_h]`. There is no ``weight_hh`` nor ``bias_hh``
        (``recurrent_weights = False``): the cell has no :math:`U`. Initialised as every
        rnnkit cell, :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`.
    """

    gates = 2

    def gate_values(self, x_t: Tensor, h_prev: Tensor) -> dict[str, Tensor]:
        """The ``update`` gate z_t at this step (diagnostics read it; it ignores ``h_prev``)."""
        W_z_x = F.linear(x_t, self.weight_ih, self.bias_ih).chunk(2, dim=-1)[0]
        return {"update": torch.sigmoid(W_z_x)}

    def forward(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        W_z_x, W_h_x = F.linear(x_t, self.weight_ih, self.bias_ih).chunk(2, dim=-1)
        z_t = torch.sigmoid(W_z_x)
        h_tilde = self.candidate_of(W_h_x)
        h_t = (1 - z_t) * h_prev + z_t * h_tilde
        return h_t

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        r"""The scan's :math:`(\log a_t, b_t)` for every step from ``projected`` = :math:`W x_t + b`
        (shape ``(..., 2H)``): :math:`\log(1 - z_t) = -\text{softplus}(k_t)` exactly, where
        :math:`1 - \sigma(k)` would round to 0 for a gate near 1, and :math:`b_t = z_t \tilde h_t`."""
        k, W_h_x = projected.chunk(2, dim=-1)
        log_a = -F.softplus(k)
        h_tilde = self.candidate_of(W_h_x)
        return log_a, torch.sigmoid(k) * h_tilde
