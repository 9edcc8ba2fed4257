"""The sLSTM's fast path: every step's W x_t + b at once, then our own recurrence over h.

:class:`SLSTMRecurrence` runs the loop of :func:`rnnkit.cells.slstm.slstm_update` (the
cell's own equations, in the same order) on preallocated buffers, and its backward is one
sweep back through time written out by hand, as the classic cells' kernels in
:mod:`rnnkit.layers.kernels`: every factor of a backward step that does not wait for the
incoming gradient is formed for a run of steps at once (:data:`CHUNK`), so a step costs one
``addmm`` and about fifteen element-wise ops with no autograd graph. With no gradient to
take (evaluation, generation), the loop is the cell's update step by step, which keeps
nothing of the steps behind it. Measured against autograd's loop over the cell's update in
``bench/RESULTS.md``.

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
from rnnkit.cells.slstm import SLSTMCell, slstm_update
from rnnkit.layers.kernels import _masked
from rnnkit.layers.state import where_state


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
        pre = xp.clone(memory_format=torch.contiguous_format)  # ĩ | f̃ | z̃ | õ: W x + b, then + R h
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
        # every step's views made once (indexing a tensor in the loop costs more than the op)
        I_pre, F_pre, Z_pre, O_pre = _steps(pre.view(L, N, 4, H).unbind(2))
        Ig, Fg, Zg, Og = _steps(gates.view(L, N, 4, H).unbind(2))
        IF = gates[..., : 2 * H].unbind(0)
        A, M_new, C_new, N_new, R, H_new = _steps((a, m_new, c_new, n_new, ratio, h_new))
        Hs, Cs, Ns, Ms = _steps((hs, cs, ns, ms))
        for t, P in enumerate(pre.unbind(0)):
            P.addmm_(Hs[t], w_t)
            i_pre, m_t = I_pre[t], M_new[t]
            torch.add(F_pre[t] if exp_forget else F.logsigmoid(F_pre[t]), Ms[t], out=A[t])
            torch.maximum(A[t], i_pre, out=m_t)
            if t == 0:  # n > 0 after a real step (n_t >= min(n_{t-1}, 1)): only n_0 can be 0
                torch.where(Ns[0] > 0, m_t, i_pre, out=m_t)
            # i' = exp(ĩ - m), f' = exp(min(a - m, 0)): one clamp and exp for both (ĩ - m <= 0)
            torch.sub(i_pre, m_t, out=Ig[t])
            torch.sub(A[t], m_t, out=Fg[t])
            IF[t].clamp_(max=0.0).exp_()
            torch.tanh(Z_pre[t], out=Zg[t])
            torch.sigmoid(O_pre[t], out=Og[t])
            torch.mul(Fg[t], Cs[t], out=C_new[t]).addcmul_(Ig[t], Zg[t])
            torch.mul(Fg[t], Ns[t], out=N_new[t]).add_(Ig[t])
            torch.div(C_new[t], N_new[t], out=R[t])
            torch.mul(Og[t], R[t], out=H_new[t])
            if mask is not None:
                for new, states in ((H_new, Hs), (C_new, Cs), (N_new, Ns), (M_new, Ms)):
                    torch.where(mask[t], new[t], states[t], out=states[t + 1])
        ctx.save_for_backward(pre, gates, a, m_new, n_new, ratio, hs, cs, ns, w_hh, mask)
        ctx.exp_forget = exp_forget
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone(), cs[L].clone(), ns[L].clone(), ms[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last, dc_last, dn_last, dm_last):
        pre, gates, a, m_new, n_new, ratio, hs, cs, ns, w_hh, mask = ctx.saved_tensors
        L, N, H = a.shape
        dy, m, keep = _masked(mask, dy.contiguous())  # m, keep: the mask as 1/0 and 0/1 (or None)
        d_pre = torch.empty_like(pre)
        DI, DF, DZ, DO = _steps(d_pre.view(L, N, 4, H).unbind(2))
        D_pre, DY = d_pre.unbind(0), dy.unbind(0)
        gh, gc, gn, gm = DY[L - 1] + dh_last, dc_last, dn_last, dm_last
        for hi in range(L, 0, -CHUNK):  # the factors of CHUNK steps at a time: they stay in cache
            lo = max(hi - CHUNK, 0)
            chunk = (pre[lo:hi], gates[lo:hi], a[lo:hi], m_new[lo:hi], n_new[lo:hi], ratio[lo:hi])
            factors = _backward_factors(*chunk, cs[lo:hi], ns[lo:hi], ctx.exp_forget)
            DO_dh, Dc_dh, Dn_dh, Di_dc, Ig, Df_dc, Df_dn, Dz_dc, To_i, To_a, Fg, D_logf = factors
            for t in range(hi - 1, lo - 1, -1):
                k = t - lo
                if m is not None:  # a padded step's state is the last one's: its gradient passes back
                    kept = [g * keep[t] for g in (gh, gc, gn, gm)]
                    gh, gc, gn, gm = (g * m[t] for g in (gh, gc, gn, gm))
                torch.mul(gh, DO_dh[k], out=DO[t])
                dc = torch.addcmul(gc, gh, Dc_dh[k])
                dn = torch.addcmul(gn, gh, Dn_dh[k], value=-1.0)
                d_i = torch.mul(dc, Di_dc[k]).addcmul_(dn, Ig[k])
                # dL/da, in the forget gate's slot: with exp(f̃) it is dL/df̃ itself
                d_a = torch.mul(dc, Df_dc[k], out=DF[t] if D_logf is None else None).addcmul_(dn, Df_dn[k])
                torch.mul(dc, Dz_dc[k], out=DZ[t])
                dm = torch.sub(gm, d_i).sub_(d_a)  # m's own gradient, less what i' and f' took from it
                torch.addcmul(d_i, dm, To_i[k], out=DI[t])
                d_a.addcmul_(dm, To_a[k])
                if D_logf is not None:
                    torch.mul(d_a, D_logf[k], out=DF[t])
                gc, gn, gm = dc.mul_(Fg[k]), dn.mul_(Fg[k]), d_a  # to the state of step t - 1
                gh = torch.addmm(DY[t - 1], D_pre[t], w_hh) if t > 0 else D_pre[t] @ w_hh
                if m is not None:
                    gh, gc, gn, gm = (g + g_kept for g, g_kept in zip((gh, gc, gn, gm), kept))
        dw_hh = d_pre.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return d_pre, gh, gc, gn, gm, dw_hh, None, None


CHUNK = 32
"""Steps whose backward factors are formed at once (bounded memory, and hot in cache)."""


def _backward_factors(
    pre: Tensor,
    gates: Tensor,
    a: Tensor,
    m_new: Tensor,
    n_new: Tensor,
    ratio: Tensor,
    c_prev: Tensor,
    n_prev: Tensor,
    exp_forget: bool,
) -> list:
    """Every factor of the backward step that does not wait for the incoming gradient, for a
    run of steps at once, each as the tuple of its steps (the last None for the exp forget gate).

    h = o r with r = c / n; c = f' c_{t-1} + i' z; n = f' n_{t-1} + i'; i' = exp(ĩ - m);
    f' = exp(min(a - m, 0)) with a = log f + m_{t-1}; m = max(a, ĩ) (ĩ where n_{t-1} = 0).
    """
    H = a.shape[-1]
    i, f, z, o = gates.split(H, dim=-1)
    i_pre = pre[..., :H]
    dc_dh = o / n_new  # dL/dc += dL/dh o / n
    dn_dh = ratio * dc_dh  # dL/dn -= dL/dh o c / n^2
    dO_dh = ratio * o * (1 - o)  # dL/dõ = dL/dh r σ'(õ)
    di_dc = z * i  # dL/dĩ through i' = (dL/dc z + dL/dn) i'
    dz_dc = i * (1 - z * z)  # dL/dz̃ = dL/dc i' tanh'(z̃)
    passes_clamp = a <= m_new  # nothing passes the clamp where a - m > 0
    df_dc = c_prev * f * passes_clamp  # dL/da through f' = (dL/dc c_{t-1} + dL/dn n_{t-1}) f'
    df_dn = n_prev * f * passes_clamp
    to_a = (a > i_pre).to(a.dtype) + 0.5 * (a == i_pre).to(a.dtype)  # the maximum's share of dL/dm
    to_a.mul_(n_prev > 0)  # none where n_{t-1} = 0: m = ĩ
    to_i = 1 - to_a
    factors = _steps((dO_dh, dc_dh, dn_dh, di_dc, i, df_dc, df_dn, dz_dc, to_i, to_a, f))
    factors.append(None if exp_forget else torch.sigmoid(-pre[..., H : 2 * H]).unbind(0))
    return factors


def _steps(tensors) -> list[tuple[Tensor, ...]]:
    """Each (L, ...) tensor as the tuple of its L steps."""
    return [t.unbind(0) for t in tensors]


def slstm_direction(
    cell: SLSTMCell, x: Tensor, state: SLSTMState, p: dict[str, Tensor], mask: Tensor | None
) -> tuple[Tensor, SLSTMState]:
    """One direction over ``x`` (L, N, H_in): output (zero at padded steps) and final state.

    Training runs :class:`SLSTMRecurrence`; without a gradient to take, the cell's update
    step by step, which keeps nothing of the steps behind it (measured faster there)."""
    bias = p["bias_ih"] + p["bias_hh"] if "bias_ih" in p else None
    xp = F.linear(x, p["weight_ih"], bias)
    W_hh, exp_forget = p["weight_hh"], cell.forget == "exp"
    if torch.is_grad_enabled() and any(t.requires_grad for t in (xp, *state, W_hh)):
        y, *final = SLSTMRecurrence.apply(xp, *state, W_hh, mask, exp_forget)
        return y, SLSTMState(*final)
    return step_loop(xp, state, W_hh, mask, exp_forget)


def step_loop(
    xp: Tensor, state: SLSTMState, W_hh: Tensor, mask: Tensor | None, exp_forget: bool
) -> tuple[Tensor, SLSTMState]:
    """The cell's update step by step from xp = W x + b (L, N, 4H); differentiable by autograd
    (``bench/cell_paths.py`` times :class:`SLSTMRecurrence` against it)."""
    outputs = []
    for t, xp_t in enumerate(xp.unbind(0)):  # unbind: one stack of the L gradients in backward
        new = slstm_update(xp_t + F.linear(state.h, W_hh), state, exp_forget)[0]
        state = new if mask is None else where_state(mask[t], new, state)
        outputs.append(state.h)
    y = torch.stack(outputs)
    return (y if mask is None else y.masked_fill(~mask, 0.0)), state
