"""The Elman RNN cell of the lecture: h_t = f(W_hh h_{t-1} + W_hx x_t + b)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell
from rnnkit.errors import RnnkitError

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
"""Each f of :data:`rnnkit.names.NONLINEARITIES`, in its order."""

DERIVATIVES = {
    "sigmoid": lambda h: h * (1 - h),
    "tanh": lambda h: 1 - h * h,
    "relu": lambda h: (h > 0).to(h.dtype),
}
"""Each f's derivative f'(a) written through its output h = f(a) (what a backward pass has saved)."""


def derivative(h: Tensor, nonlinearity: str) -> Tensor:
    """f'(a) at every entry of ``h = f(a)``: h(1 - h) for sigmoid, 1 - h² for tanh, 1[h > 0] for relu."""
    return DERIVATIVES[nonlinearity](h)


class ElmanCell(RecurrentCell):
    r"""One step of the lecture's simple recurrent network.

    .. math::
        h_t = f\left(W^{(hh)} h_{t-1} + W^{(hx)} x_t + b\right)

    with :math:`f` the lecture's :math:`\sigma` (``"sigmoid"``), ``"tanh"`` or ``"relu"``.

    Args:
        input_size: size d of x_t.
        hidden_size: size D_h of h_t.
        nonlinearity: ``"sigmoid"``, ``"tanh"`` (torch's default) or ``"relu"``.
        bias: add ``b = b_ih + b_hh``; the slide has none (``bias=False``).
        learn_initial_state: learn h_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``h_prev`` of shape ``(N, H)``.
    Outputs: ``h_t`` of shape ``(N, H)``.

    .. note::
        Parameters are named and shaped as torch's ``nn.RNNCell`` (``weight_hh`` is
        :math:`W^{(hh)}`, ``weight_ih`` is :math:`W^{(hx)}`); torch keeps two biases, so
        :math:`b` is ``bias_ih + bias_hh``. With ``"tanh"``/``"relu"`` this cell is
        ``nn.RNNCell``; torch has no sigmoid RNN.

    Example::

        >>> cell = ElmanCell(8, 16, nonlinearity="sigmoid", bias=False)
        >>> h = cell(torch.randn(4, 8), cell.initial_state(4))
    """

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ACTIVATIONS:
            raise RnnkitError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)

    def forward(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        f = ACTIVATIONS[self.nonlinearity]
        h_t = f(F.linear(h_prev, self.weight_hh, self.bias_hh) + F.linear(x_t, self.weight_ih, self.bias_ih))
        return h_t

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
