"""The layer-normalised LSTM's fast path: every step's LN(θ_x x_t) at once, then the loop over h.

Ba et al.'s LN-LSTM normalises the input and recurrent contributions separately, so the
input half of every step (one GEMM and one LN over all L·N rows) needs no h_{t-1}; only
LN(θ_h h_{t-1}) and the cell's update remain in the loop. Autograd does the backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import LSTMState
from rnnkit.cells.lnlstm import LayerNormLSTMCell, layer_norm
from rnnkit.layers.state import where_state


def lnlstm_direction(
    cell: LayerNormLSTMCell, x: Tensor, state: LSTMState, p: dict[str, Tensor], mask: Tensor | None
) -> tuple[Tensor, LSTMState]:
    """One direction over ``x`` (L, N, H_in): output (zero at padded steps) and final state."""
    W_x = layer_norm(F.linear(x, p["weight_ih"]), p["ln_ih_weight"], p["ln_ih_bias"])
    if "bias_ih" in p:
        W_x = W_x + (p["bias_ih"] + p["bias_hh"])
    W_hh, a_hh, b_hh, a_c, b_c = (
        p[k] for k in ("weight_hh", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")
    )
    h, c = state
    outputs = []
    for t, W_x_t in enumerate(W_x.unbind(0)):  # unbind: one backward for all steps' slices
        pre = layer_norm(F.linear(h, W_hh), a_hh, b_hh) + W_x_t
        i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
        c_t = torch.sigmoid(f_pre) * c + torch.sigmoid(i_pre) * torch.tanh(g_pre)
        h_t = torch.sigmoid(o_pre) * torch.tanh(layer_norm(c_t, a_c, b_c))
        if mask is None:
            h, c = h_t, c_t
        else:
            h, c = where_state(mask[t], LSTMState(h_t, c_t), LSTMState(h, c))
        outputs.append(h)
    y = torch.stack(outputs)
    if mask is not None:
        y = y.masked_fill(~mask, 0.0)
    return y, LSTMState(h, c)
