"""The sLSTM of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", §2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import RecurrentCell, SLSTMState
from rnnkit.errors import RnnkitError
from rnnkit.names import FORGET_GATES

__all__ = ["FORGET_GATES", "SLSTMCell", "slstm_update"]


def slstm_update(pre: Tensor, state: SLSTMState, exp_forget: bool) -> tuple[SLSTMState, dict[str, Tensor]]:
    """One sLSTM step from the gate pre-activations ``pre`` = [ĩ | f̃ | z̃ | õ] (N, 4H): the new
    state and the gates as the step applies them (``input`` i'_t and ``forget`` f'_t stabilised,
    in [0, 1]; ``output`` o_t; ``candidate`` z_t). Shared by the cell and the layer's fast path."""
    _, c_prev, n_prev, m_prev = state
    i_pre, f_pre, z_pre, o_pre = pre.chunk(4, dim=-1)
    log_f = f_pre if exp_forget else F.logsigmoid(f_pre)
    # Where n_{t-1} = 0 (the zero start) the forget branch scales nothing: m_t = log i_t, so an
    # f_t far above i_t cannot underflow i'_t (and n_t) to 0. Otherwise the clamp is a no-op.
    m_t = torch.where(n_prev > 0, torch.maximum(log_f + m_prev, i_pre), i_pre)
    i_t = torch.exp(i_pre - m_t)
    f_t = torch.exp((log_f + m_prev - m_t).clamp(max=0.0))
    z_t = torch.tanh(z_pre)
    o_t = torch.sigmoid(o_pre)
    c_t = f_t * c_prev + i_t * z_t
    n_t = f_t * n_prev + i_t
    h_t = o_t * (c_t / n_t)
    return SLSTMState(h_t, c_t, n_t, m_t), {"input": i_t, "forget": f_t, "output": o_t, "candidate": z_t}


class SLSTMCell(RecurrentCell):
    r"""One step of an sLSTM (Beck et al. 2024, §2.2): exponential gating with a normaliser
    state and a stabiliser state.

    .. math::
        \tilde z_t, \tilde\imath_t, \tilde f_t, \tilde o_t &= W_{z,i,f,o}\, x_t + R_{z,i,f,o}\, h_{t-1}
            + b_{z,i,f,o} & \text{(in eqs. 11-14)} \\
        z_t &= \tanh(\tilde z_t) & \text{(eq. 11)} \\
        i_t &= \exp(\tilde\imath_t) & \text{(eq. 12)} \\
        f_t &= \sigma(\tilde f_t) \text{ or } \exp(\tilde f_t) & \text{(eq. 13)} \\
        o_t &= \sigma(\tilde o_t) & \text{(eq. 14)} \\
        m_t &= \max\left(\log f_t + m_{t-1},\ \log i_t\right)
            \quad (\log i_t \text{ where } n_{t-1} = 0) & \text{(eq. 15)} \\
        i'_t &= \exp(\log i_t - m_t) & \text{(eq. 16)} \\
        f'_t &= \exp(\log f_t + m_{t-1} - m_t) & \text{(eq. 17)} \\
        c_t &= f'_t \odot c_{t-1} + i'_t \odot z_t & \text{(eq. 8, stabilised gates)} \\
        n_t &= f'_t \odot n_{t-1} + i'_t & \text{(eq. 9)} \\
        h_t &= o_t \odot c_t / n_t & \text{(eq. 10)}

    (Equation numbers of arXiv:2405.04517, §2.2.)
    The stabiliser m_t is the running log-space maximum of the gates: c_t and n_t are the
    unstabilised ones times :math:`e^{-m_t}`, so exp never overflows and h_t = o_t c_t / n_t is
    the same as without it (tested in float64 where the unstabilised form does not overflow).

    Args:
        input_size: size of x_t.
        hidden_size: size of h_t, c_t, n_t and m_t.
        bias: add the biases b (as ``bias_ih + bias_hh``, torch's two biases).
        forget: ``"sigmoid"`` (default, as the xLSTM code) or ``"exp"``: the forget gate.
        learn_initial_state: learn h_0 instead of starting from zeros (c_0 = n_0 = m_0 = 0).

    Inputs: ``x_t`` of shape ``(N, H_in)``, ``state`` an :class:`SLSTMState` ``(h, c, n, m)``,
    each of shape ``(N, H)``.
    Outputs: :class:`SLSTMState` ``(h_t, c_t, n_t, m_t)``.

    .. note::
        Weights as torch's ``nn.LSTMCell`` (``weight_ih`` (4H, H_in), ``weight_hh`` (4H, H),
        two biases), rows stacked i|f|z|o. The paper's recurrent matrix R may be
        block-diagonal over heads; here it is one head, the full W_hh. The state starts at
        (h_0, 0, 0, 0), h_0 zeros or learned; c_0 is not learned (c and n start empty, so
        that n_t sums input gates). One departure: where n_{t-1} = 0, m_t = log i_t. The
        paper does not say how m starts; with m_0 = 0 a first forget gate ~90 above the
        input gate (in log space) underflows i'_1 to 0 in float32, and h_1 = 0/0. Any m_t
        gives the same h_t (c_t and n_t scale together), and with this one :math:`n_t \ge 1`
        from the first step on. A state passed in with n = 0 must have c = 0 there.
    """

    gates = 4
    state_type = SLSTMState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget: str = "sigmoid",
        learn_initial_state: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if forget not in FORGET_GATES:
            raise RnnkitError(f"forget must be one of {list(FORGET_GATES)}, got {forget!r}")
        self.forget = forget
        super().__init__(input_size, hidden_size, bias, learn_initial_state, device, dtype)

    def input_part(self, x: Tensor) -> Tensor:
        """W x + b for any number of leading dimensions: the part of the pre-activations that
        does not wait for h_{t-1} (the fast path computes it for every step at once)."""
        bias = None if self.bias_ih is None else self.bias_ih + self.bias_hh
        return F.linear(x, self.weight_ih, bias)

    def step(self, W_x: Tensor, state: SLSTMState) -> SLSTMState:
        """One step from the input part ``W_x`` = :meth:`input_part` of x_t."""
        return slstm_update(W_x + F.linear(state[0], self.weight_hh), state, self.forget == "exp")[0]

    def gate_values(self, x_t: Tensor, state: SLSTMState) -> dict[str, Tensor]:
        """The gates as this step applies them: ``input`` i'_t and ``forget`` f'_t (stabilised,
        in [0, 1]), ``output`` o_t, ``candidate`` z_t."""
        pre = self.input_part(x_t) + F.linear(state[0], self.weight_hh)
        return slstm_update(pre, state, self.forget == "exp")[1]

    def forward(self, x_t: Tensor, state: SLSTMState) -> SLSTMState:
        return self.step(self.input_part(x_t), state)

    def extra_repr(self) -> str:
        extra = "" if self.forget == "sigmoid" else f", forget={self.forget!r}"
        return super().extra_repr() + extra
