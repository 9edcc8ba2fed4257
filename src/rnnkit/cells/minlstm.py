"""The minimal LSTM of Feng et al. 2024 ("Were RNNs All We Needed?"): normalised gates from x_t alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.mingru import MinCell


class MinLSTMCell(MinCell):
    r"""One step of a minLSTM (Feng et al. 2024, §3.2): input-only gates, normalised to sum to one.

    .. math::
        f_t &= \sigma\left(W^{(f)} x_t + b_f\right) \\
        i_t &= \sigma\left(W^{(i)} x_t + b_i\right) \\
        \tilde h_t &= g\left(W^{(h)} x_t + b_h\right) \\
        f'_t &= \frac{f_t}{f_t + i_t}, \qquad i'_t = \frac{i_t}{f_t + i_t} \\
        h_t &= f'_t \circ h_{t-1} + i'_t \circ \tilde h_t

    The LSTM without :math:`h_{t-1}` in its gates, without the output gate and the tanh
    (§3.2.1-3.2.2), and with :math:`f'_t + i'_t = 1` so that :math:`h_t`'s scale does not
    depend on t (§3.2.3); the cell state is the hidden state. As for :class:`MinGRUCell`
    the recurrence is :math:`h_t = a_t \circ h_{t-1} + b_t` (:math:`a_t = f'_t`,
    :math:`b_t = i'_t \circ \tilde h_t`), which the fast path scans in parallel.

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t.
        bias: add the biases b_f, b_i, b_h.
        candidate: ``"g"`` (default) or ``"linear"``; the choice and its reason are
            :class:`MinGRUCell`'s.
        learn_initial_state: learn h_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``h_prev`` of shape ``(N, H)``.
    Outputs: ``h_t`` of shape ``(N, H)``.

    .. note::
        Parameters: ``weight_ih`` stacks :math:`[W^{(f)}; W^{(i)}; W^{(h)}]` (gate order
        f|i|h) and ``bias_ih`` likewise; no ``weight_hh`` nor ``bias_hh``. The state is one
        tensor, not an (h, c) pair: the paper's minLSTM has no separate cell state.
    """

    gates = 3

    def gate_values(self, x_t: Tensor, h_prev: Tensor) -> dict[str, Tensor]:
        """The normalised ``forget`` f'_t and ``input`` i'_t gates at this step (diagnostics read them)."""
        W_f_x, W_i_x, _ = F.linear(x_t, self.weight_ih, self.bias_ih).chunk(3, dim=-1)
        f_t, i_t = torch.sigmoid(W_f_x), torch.sigmoid(W_i_x)
        return {"forget": f_t / (f_t + i_t), "input": i_t / (f_t + i_t)}

    def forward(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        W_f_x, W_i_x, W_h_x = F.linear(x_t, self.weight_ih, self.bias_ih).chunk(3, dim=-1)
        f_t = torch.sigmoid(W_f_x)
        i_t = torch.sigmoid(W_i_x)
        h_tilde = self.candidate_of(W_h_x)
        f_prime = f_t / (f_t + i_t)
        i_prime = i_t / (f_t + i_t)
        h_t = f_prime * h_prev + i_prime * h_tilde
        return h_t

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        r"""The scan's :math:`(\log a_t, b_t)` from ``projected`` = :math:`W x_t + b` (shape
        ``(..., 3H)``), in log space as the paper's appendix: with
        :math:`d = \log i_t - \log f_t = \text{softplus}(-k_f) - \text{softplus}(-k_i)`,
        :math:`\log f'_t = -\text{softplus}(d)` and :math:`i'_t = \sigma(d)`."""
        k_f, k_i, W_h_x = projected.chunk(3, dim=-1)
        d = F.softplus(-k_f) - F.softplus(-k_i)
        h_tilde = self.candidate_of(W_h_x)
        return -F.softplus(d), torch.sigmoid(d) * h_tilde
