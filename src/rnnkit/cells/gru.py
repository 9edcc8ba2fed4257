"""The gated recurrent unit of the lecture (Cho et al. 2014), in both reset placements."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell


class GRUCell(RecurrentCell):
    r"""One step of a GRU, written as the lecture's slide.

    .. math::
        z_t &= \sigma\left(W^{(z)} x_t + U^{(z)} h_{t-1}\right) \\
        r_t &= \sigma\left(W^{(r)} x_t + U^{(r)} h_{t-1}\right) \\
        \tilde h_t &= \tanh\left(W x_t + r_t \circ U h_{t-1}\right) \\
        h_t &= z_t \circ h_{t-1} + (1 - z_t) \circ \tilde h_t

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t.
        bias: add biases as torch has them (see note).
        reset_after: ``True`` (default) applies r_t after the matrix product, as on
            the slide and in torch/cuDNN; ``False`` is Cho et al. 2014's original
            :math:`\tilde h_t = \tanh(W x_t + U (r_t \circ h_{t-1}))`.
        learn_initial_state: learn h_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``h_prev`` of shape ``(N, H)``.
    Outputs: ``h_t`` of shape ``(N, H)``.

    .. note::
        Parameters follow torch's ``nn.GRUCell``: ``weight_ih`` stacks
        :math:`[W^{(r)}; W^{(z)}; W]`, ``weight_hh`` stacks :math:`[U^{(r)}; U^{(z)}; U]`
        (torch's gate order r|z|n), each with its own bias ``bias_ih``/``bias_hh``; the
        slide writes none. The candidate's hidden bias sits inside the reset:
        :math:`r_t \circ (U h_{t-1} + b_{hn})`, as in torch. With ``reset_after=True``
        this cell is ``nn.GRUCell``.
    """

    gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.reset_after = bool(reset_after)
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)

    def gate_values(self, x_t: Tensor, h_prev: Tensor) -> dict[str, Tensor]:
        """The ``update`` gate z_t and the ``reset`` gate r_t at this step (diagnostics read them)."""
        return dict(zip(("update", "reset"), self._gates(x_t, h_prev)[:2]))

    def _gates(self, x_t: Tensor, h_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        W_r_x, W_z_x, W_x = F.linear(x_t, self.weight_ih, self.bias_ih).chunk(3, dim=-1)
        U_r, U_z, _ = self.weight_hh.chunk(3)
        b_r, b_z, _ = self.bias_hh.chunk(3) if self.bias else (None, None, None)
        z_t = torch.sigmoid(W_z_x + F.linear(h_prev, U_z, b_z))
        r_t = torch.sigmoid(W_r_x + F.linear(h_prev, U_r, b_r))
        return z_t, r_t, W_x

    def forward(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        z_t, r_t, W_x = self._gates(x_t, h_prev)
        U = self.weight_hh.chunk(3)[2]
        b_n = self.bias_hh.chunk(3)[2] if self.bias else None
        if self.reset_after:
            h_tilde = torch.tanh(W_x + r_t * F.linear(h_prev, U, b_n))
        else:
            h_tilde = torch.tanh(W_x + F.linear(r_t * h_prev, U, b_n))
        h_t = z_t * h_prev + (1 - z_t) * h_tilde
        return h_t

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
