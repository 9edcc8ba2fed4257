"""The sLSTM's fast path: every step's W x_t + b at once, then our own recurrence over h.

:class:`SLSTMRecurrence` runs the loop of :func:`rnnkit.cells.slstm.slstm_update` (the
cell's own equations, in the same order) on preallocated buffers, and its backward is one
sweep back through time written out by hand, as the classic cells' kernels in
:mod:`rnnkit.layers.kernels`: a step costs one ``addmm`` and a few dozen element-wise ops
with no autograd graph, where autograd's loop recorded and replayed fifteen nodes per step.

The backward carries dL/d(h, c, n, m) of the state. h_t does not depend on the stabiliser
m_t (c_t and n_t scale together), but the state c_t, n_t does, so the gradient through m is
kept in full, as autograd takes it through the reference: the maximum's gradient goes to its
larger argument (half to each on a tie), and nothing passes the clamp of f'_t's exponent
where that exponent is above 0 (possible only where n_{t-1} = 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.base import SLSTMState
from rnnkit.cells.slstm import SLSTMCell


class SLSTMRecurrence(torch.autograd.Function):
    """The recurrence of :class:`~rnnkit.cells.SLSTMCell` given xp = x W_ih^T + b.

    Returns (h_{1..L}, h_L, c_L, n_L, m_L); ``mask`` (L, N, 1) marks real steps (a padded
    step keeps the state and emits zeros).
    """

    @staticmethod
    def forward(ctx, xp, h0, c0, n0, m0, w_hh, mask, exp_forget: bool):
        L, N, H4 = xp.shape
        H = H4 // 4
        hs, cs, ns, ms = (xp.new_empty(L + 1, N, H) for _ in range(4))  # the states, masked
        hs[0], cs[0], ns[0], ms[0] = h0, c0, n0, m0
        pre = xp.new_empty(L, N, 4 * H)  # ĩ | f̃ | z̃ | õ
        gates = xp.new_empty(L, N, 4 * H)  # i' | f' | z | o
        a = xp.new_empty(L, N, H)  # log f_t + m_{t-1}
        # a step's new c, n, m: the states themselves without padding
        if mask is None:
            c_new, n_new, m_new = cs[1:], ns[1:], ms[1:]
        else:
            c_new, n_new, m_new = (xp.new_empty(L, N, H) for _ in range(3))
        ratio = xp.new_empty(L, N, H)  # c_t / n_t
        h_new = hs[1:] if mask is None else xp.new_empty(L, N, H)
        w_t = w_hh.t()
        for t in range(L):
            P, G = pre[t], gates[t]
            torch.addmm(xp[t], hs[t], w_t, out=P)
            i_pre, f_pre = P[:, :H], P[:, H : 2 * H]
            i_t, f_t, z_t, o_t = G[:, :H], G[:, H : 2 * H], G[:, 2 * H : 3 * H], G[:, 3 * H :]
            torch.add(f_pre if exp_forget else F.logsigmoid(f_pre), ms[t], out=a[t])
            torch.maximum(a[t], i_pre, out=m_new[t])
            torch.where(ns[t] > 0, m_new[t], i_pre, out=m_new[t])
            torch.sub(i_pre, m_new[t], out=i_t).exp_()
            torch.sub(a[t], m_new[t], out=f_t).clamp_(max=0.0).exp_()
            torch.tanh(P[:, 2 * H : 3 * H], out=z_t)
            torch.sigmoid(P[:, 3 * H :], out=o_t)
            torch.mul(f_t, cs[t], out=c_new[t]).addcmul_(i_t, z_t)
            torch.mul(f_t, ns[t], out=n_new[t]).add_(i_t)
            torch.div(c_new[t], n_new[t], out=ratio[t])
            torch.mul(o_t, ratio[t], out=h_new[t])
            if mask is not None:
                for new, states in ((h_new, hs), (c_new, cs), (n_new, ns), (m_new, ms)):
                    torch.where(mask[t], new[t], states[t], out=states[t + 1])
        ctx.save_for_backward(pre, gates, a, m_new, n_new, ratio, hs, cs, ns, w_hh, mask)
        ctx.exp_forget = exp_forget
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone(), cs[L].clone(), ns[L].clone(), ms[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last, dc_last, dn_last, dm_last):
        pre, gates, a, m_new, n_new, ratio, hs, cs, ns, w_hh, mask = ctx.saved_tensors
        L, H = a.shape[0], a.shape[2]
        dy = dy.contiguous() if mask is None else dy * mask
        i, f, z, o = gates.split(H, dim=-1)
        i_pre = pre[..., :H]
        # Everything that does not wait for the incoming gradient, for all steps at once.
        d_z = 1 - z * z
        d_o = o * (1 - o)
        d_f = torch.ones_like(a) if ctx.exp_forget else torch.sigmoid(-pre[..., H : 2 * H])
        inv_n = n_new.reciprocal()
        passes_clamp = (a <= m_new).to(a.dtype)  # f' = exp(min(a - m, 0))
        to_a = (a > i_pre).to(a.dtype) + 0.5 * (a == i_pre).to(a.dtype)  # m = max(a, ĩ) ...
        to_a.mul_(ns[:-1] > 0)  # ... where n_{t-1} > 0, else m = ĩ
        to_i = 1 - to_a
        m = keep = None
        if mask is not None:
            m = mask.to(a.dtype)
            keep = 1 - m
        d_pre = torch.empty_like(pre)
        gh, gc, gn, gm = dy[L - 1] + dh_last, dc_last.clone(), dn_last.clone(), dm_last.clone()
        for t in range(L - 1, -1, -1):
            if m is not None:  # a padded step's state is the last one's: its gradient passes back
                kept = [g * keep[t] for g in (gh, gc, gn, gm)]
                gh, gc, gn, gm = (g * m[t] for g in (gh, gc, gn, gm))
            dI, dF, dZ, dO = d_pre[t].split(H, dim=-1)
            # h = o r, r = c / n
            torch.mul(gh, ratio[t], out=dO)
            dr = gh * o[t]
            dc = torch.addcmul(gc, dr, inv_n[t])
            dn = gn - dr * ratio[t] * inv_n[t]
            # c = f' c_{t-1} + i' z,  n = f' n_{t-1} + i'
            d_i = torch.addcmul(dn, dc, z[t])
            d_f_gate = dc * cs[t]
            d_f_gate.addcmul_(dn, ns[t])
            torch.mul(dc, i[t], out=dZ)
            # i' = exp(ĩ - m), f' = exp(min(a - m, 0))
            d_i.mul_(i[t])
            d_f_gate.mul_(f[t]).mul_(passes_clamp[t])
            dm = gm - d_i - d_f_gate
            da = torch.addcmul(d_f_gate, dm, to_a[t])
            torch.addcmul(d_i, dm, to_i[t], out=dI)
            torch.mul(da, d_f[t], out=dF)
            dZ.mul_(d_z[t])
            dO.mul_(d_o[t])
            gc, gn, gm = dc * f[t], dn * f[t], da  # to the state of step t - 1
            gh = dy[t - 1].clone() if t > 0 else torch.zeros_like(gh)
            gh.addmm_(d_pre[t], w_hh)
            if m is not None:
                gh += kept[0]
                gc += kept[1]
                gn += kept[2]
                gm += kept[3]
        dw_hh = d_pre.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return d_pre, gh, gc, gn, gm, dw_hh, None, None


def slstm_direction(
    cell: SLSTMCell, x: Tensor, state: SLSTMState, p: dict[str, Tensor], mask: Tensor | None
) -> tuple[Tensor, SLSTMState]:
    """One direction over ``x`` (L, N, H_in): output (zero at padded steps) and final state."""
    bias = p["bias_ih"] + p["bias_hh"] if "bias_ih" in p else None
    xp = F.linear(x, p["weight_ih"], bias)
    y, *final = SLSTMRecurrence.apply(xp, *state, p["weight_hh"], mask, cell.forget == "exp")
    return y, SLSTMState(*final)
