"""The sLSTM's fast path: every step's W x_t + b at once, then the loop over h.

Only R h_{t-1} and the pointwise update (:func:`rnnkit.cells.slstm.slstm_update`, the
cell's own) remain in the loop; autograd does the backward. The loop is the reference
path's arithmetic in the same order, so the two agree to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.base import SLSTMState
from rnnkit.cells.slstm import SLSTMCell, slstm_update
from rnnkit.layers.state import where_state


def slstm_direction(
    cell: SLSTMCell, x: Tensor, state: SLSTMState, p: dict[str, Tensor], mask: Tensor | None
) -> tuple[Tensor, SLSTMState]:
    """One direction over ``x`` (L, N, H_in): output (zero at padded steps) and final state."""
    bias = p["bias_ih"] + p["bias_hh"] if "bias_ih" in p else None
    W_x = F.linear(x, p["weight_ih"], bias)
    W_hh, exp_forget = p["weight_hh"], cell.forget == "exp"
    outputs = []
    # unbind, not W_x[t]: its backward stacks the L gradients once, where each W_x[t]'s would
    # write into its own zero tensor of all L steps (L^2 memory traffic)
    for t, W_x_t in enumerate(W_x.unbind(0)):
        new = slstm_update(W_x_t + F.linear(state.h, W_hh), state, exp_forget)[0]
        state = new if mask is None else where_state(mask[t], new, state)
        outputs.append(state.h)
    y = torch.stack(outputs)
    if mask is not None:
        y = y.masked_fill(~mask, 0.0)
    return y, state
