"""The layer-normalised LSTM of Ba, Kiros & Hinton 2016 ("Layer Normalization", §3.1 and appendix)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import LSTMState, RecurrentCell

EPS = 1e-5
"""LN's ε (torch's ``nn.LayerNorm`` default)."""


def layer_norm(a: Tensor, gain: Tensor, shift: Tensor) -> Tensor:
    r""":math:`\text{LN}(a; \alpha, \beta) = \alpha \circ (a - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`,
    μ and σ² over the last dimension (one sample, all its units, as Ba et al. normalise)."""
    return F.layer_norm(a, a.shape[-1:], gain, shift, EPS)


class LayerNormLSTMCell(RecurrentCell):
    r"""One step of a layer-normalised LSTM (Ba et al. 2016), in the lecture's gate names.

    .. math::
        \begin{pmatrix} i_t \\ f_t \\ g_t \\ o_t \end{pmatrix}_{\text{pre}} &=
            \text{LN}(\theta_h h_{t-1}; \alpha_1, \beta_1) + \text{LN}(\theta_x x_t; \alpha_2, \beta_2) + b \\
        i_t, f_t, o_t &= \sigma(\cdot), \quad g_t = \tanh(\cdot) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh\left(\text{LN}(c_t; \alpha_3, \beta_3)\right)

    LN normalises the recurrent and the input contributions separately, each over all 4H
    pre-activations of a sample (the paper's summed inputs), so neither can swamp the
    other whatever the scale of h or x; and the memory cell before its tanh.

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t and c_t.
        bias: add b (as ``bias_ih + bias_hh``, torch's two biases).
        learn_initial_state: learn h_0 and c_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``state`` an :class:`LSTMState` ``(h, c)``.
    Outputs: :class:`LSTMState` ``(h_t, c_t)``.

    .. note::
        Weights as torch's ``nn.LSTMCell`` (gate order i|f|g|o), plus the LN gains and
        shifts ``ln_hh_weight``/``ln_hh_bias`` (α₁, β₁), ``ln_ih_weight``/``ln_ih_bias``
        (α₂, β₂), both of size 4H, and ``ln_c_weight``/``ln_c_bias`` (α₃, β₃) of size H;
        gains start at 1 and shifts at 0 (the paper's init). β₁ + β₂ + b is one bias
        written three ways, as in the paper. The LSTM's weights start as torch's
        :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`; LN makes their scale irrelevant to the gates.
        The state is an ordinary :class:`LSTMState`; torch has no fused op for this cell.
    """

    gates = 4
    has_cell_state = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)
        kw = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        self.ln_ih_weight = nn.Parameter(torch.ones(rows, **kw))
        self.ln_ih_bias = nn.Parameter(torch.zeros(rows, **kw))
        self.ln_hh_weight = nn.Parameter(torch.ones(rows, **kw))
        self.ln_hh_bias = nn.Parameter(torch.zeros(rows, **kw))
        self.ln_c_weight = nn.Parameter(torch.ones(hidden_size, **kw))
        self.ln_c_bias = nn.Parameter(torch.zeros(hidden_size, **kw))

    def reset_parameters(self) -> None:
        """torch's LSTM init for the weights and biases; LN gains 1, shifts 0 (Ba et al.)."""
        super().reset_parameters()
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)

    def gate_values(self, x_t: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """The gates and the new memory at this step: ``input``, ``forget``, ``output``, ``candidate``."""
        return self._gates(self.input_part(x_t), state[0])

    def input_part(self, x: Tensor) -> Tensor:
        """LN(θ_x x; α₂, β₂) + b for any number of leading dimensions: the part of the gates
        that does not wait for h_{t-1} (the fast path computes it for every step at once)."""
        W_x = layer_norm(F.linear(x, self.weight_ih), self.ln_ih_weight, self.ln_ih_bias)
        return W_x if self.bias_ih is None else W_x + (self.bias_ih + self.bias_hh)

    def _gates(self, W_x: Tensor, h_prev: Tensor) -> dict[str, Tensor]:
        U_h = layer_norm(F.linear(h_prev, self.weight_hh), self.ln_hh_weight, self.ln_hh_bias)
        pre = U_h + W_x
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
        return {
            "input": torch.sigmoid(i_pre),
            "forget": torch.sigmoid(f_pre),
            "output": torch.sigmoid(o_pre),
            "candidate": torch.tanh(g_pre),
        }

    def step(self, W_x: Tensor, state: LSTMState) -> LSTMState:
        """One step from the input part ``W_x`` = :meth:`input_part` of x_t."""
        c_prev = state[1]
        gates = self._gates(W_x, state[0])
        i_t, f_t, o_t, g_t = gates["input"], gates["forget"], gates["output"], gates["candidate"]
        c_t = f_t * c_prev + i_t * g_t
        h_t = o_t * torch.tanh(layer_norm(c_t, self.ln_c_weight, self.ln_c_bias))
        return LSTMState(h_t, c_t)

    def forward(self, x_t: Tensor, state: LSTMState) -> LSTMState:
        return self.step(self.input_part(x_t), state)
