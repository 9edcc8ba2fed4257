"""The long short-term memory cell of the lecture (Hochreiter & Schmidhuber 1997)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import LSTMState, RecurrentCell


class LSTMCell(RecurrentCell):
    r"""One step of an LSTM, written as the lecture's slide (after Graves).

    .. math::
        i_t &= \sigma\left(\theta_{xi} x_t + \theta_{hi} h_{t-1} + b_i\right) \\
        f_t &= \sigma\left(\theta_{xf} x_t + \theta_{hf} h_{t-1} + b_f\right) \\
        o_t &= \sigma\left(\theta_{xo} x_t + \theta_{ho} h_{t-1} + b_o\right) \\
        g_t &= \tanh\left(\theta_{xg} x_t + \theta_{hg} h_{t-1} + b_g\right) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t and c_t.
        bias: add the biases b_i, b_f, b_o, b_g.
        forget_bias: if given, the forget gate's bias starts at this value (e.g. 1.0,
            Jozefowicz et al. 2015) instead of torch's uniform init.
        learn_initial_state: learn h_0 and c_0 instead of starting from zeros.

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``state`` an :class:`LSTMState` ``(h, c)``
    each of shape ``(N, H)``.
    Outputs: :class:`LSTMState` ``(h_t, c_t)``.

    .. note::
        Parameters follow torch's ``nn.LSTMCell``: rows stacked in the gate order
        i|f|g|o, two biases (``b = bias_ih + bias_hh``). ``forget_bias`` is written to
        ``bias_ih``'s forget rows with ``bias_hh``'s set to zero, so the sum is the value.
    """

    gates = 4
    has_cell_state = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float | None = None,
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is not None and self.bias:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def gate_values(self, x_t: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """The gates and the new memory at this step: ``input`` i_t, ``forget`` f_t,
        ``output`` o_t and ``candidate`` g_t (the first four equations; diagnostics read them)."""
        h_prev = state[0]
        gates = F.linear(x_t, self.weight_ih, self.bias_ih) + F.linear(h_prev, self.weight_hh, self.bias_hh)
        i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)
        i_t = torch.sigmoid(i_pre)
        f_t = torch.sigmoid(f_pre)
        o_t = torch.sigmoid(o_pre)
        g_t = torch.tanh(g_pre)
        return {"input": i_t, "forget": f_t, "output": o_t, "candidate": g_t}

    def forward(self, x_t: Tensor, state: LSTMState) -> LSTMState:
        c_prev = state[1]
        gates = self.gate_values(x_t, state)
        i_t, f_t, o_t, g_t = gates["input"], gates["forget"], gates["output"], gates["candidate"]
        c_t = f_t * c_prev + i_t * g_t
        h_t = o_t * torch.tanh(c_t)
        return LSTMState(h_t, c_t)

    def extra_repr(self) -> str:
        extra = "" if self.forget_bias is None else f", forget_bias={self.forget_bias}"
        return super().extra_repr() + extra
