r"""The layer-normalised LSTM's fast path: every step's LN(θ_x x_t) at once, then our own
recurrence over h.

Ba et al.'s LN-LSTM normalises the input and recurrent contributions separately, so the
input half of every step (one GEMM and one LN over all L·N rows) needs no h_{t-1}; autograd
differentiates it. Only LN(θ_h h_{t-1}) and the cell's update stay in the loop:
:class:`LNLSTMRecurrence` runs them on preallocated buffers, and its backward is one sweep
back through time written out by hand, as :mod:`rnnkit.layers.slstm` does for the sLSTM: the
factors of a backward step that do not wait for the incoming gradient are formed for
:data:`CHUNK` steps at once, each LayerNorm's backward is torch's own op, and θ_h's gradient
is one product over all steps after the sweep. With no gradient to take (evaluation,
generation), the loop is the cell's own step, which keeps nothing of the steps behind it.

The backward of LN(a; α, β) = α â + β, â = (a − μ) ρ with ρ = 1/√(σ² + ε), the one torch's
op computes: with d = α ∘ dL/d(LN),

.. math::
    \frac{\partial L}{\partial a} = \rho\,\big(d - \bar d - \hat a\,\overline{d \circ \hat a}\big)

(bars: means over the normalised units), dL/dα = Σ dL/d(LN) ∘ â and dL/dβ = Σ dL/d(LN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.base import LSTMState
from rnnkit.cells.lnlstm import EPS, LayerNormLSTMCell, layer_norm
from rnnkit.layers.kernels import _masked
from rnnkit.layers.state import where_state

CHUNK = 32
"""Steps whose backward factors are formed at once (bounded memory, and hot in cache)."""

KERNEL_FROM = 400
"""The narrowest layer trained by the kernel. Measured on a 2-core CPU, one thread, training
one direction (``bench/cell_paths.py --kernel lnlstm``, bench/RESULTS.md): the kernel over
autograd through the step loop 0.81-0.85x at 128 units, 0.86-1.01x at 256, 1.04-1.06x at
400 and 1.41-1.46x at 650 (the loop's Python costs the same at every width; the kernel's
single θ_h product and fewer passes over memory gain with it)."""


class LNLSTMRecurrence(torch.autograd.Function):
    """The recurrence of :class:`~rnnkit.cells.LayerNormLSTMCell` given
    xp = LN(x W_ih^T; α₂, β₂) + b.

    Returns (h_{1..L}, h_L, c_L); ``mask`` (L, N, 1) marks real steps (a padded step keeps
    the state and emits zeros).
    """

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, a_hh, b_hh, a_c, b_c, mask):
        L, N, H4 = xp.shape
        H = H4 // 4
        hs, cs = xp.new_empty(L + 1, N, H), xp.new_empty(L + 1, N, H)  # the states, masked
        hs[0], cs[0] = h0, c0
        rec = xp.new_empty(L, N, H4)  # θ_h h_{t-1}, before its LN
        gates = xp.new_empty(L, N, H4)  # i | f | g | o
        tanh_c = xp.new_empty(L, N, H)  # tanh(LN(c_t))
        c_new = cs[1:] if mask is None else xp.new_empty(L, N, H)
        h_new = hs[1:] if mask is None else xp.new_empty(L, N, H)
        w_t = w_hh.t()
        # every step's views made once (indexing a tensor in the loop costs more than the op)
        Rec, Gates, Xp, T = (t.unbind(0) for t in (rec, gates, xp, tanh_c))
        IF, Gg, Og = (u.unbind(0) for u in gates.split((2 * H, H, H), dim=-1))
        Ig, Fg = (u.unbind(0) for u in gates[..., : 2 * H].view(L, N, 2, H).unbind(2))
        C_new, H_new, Hs, Cs = (t.unbind(0) for t in (c_new, h_new, hs, cs))
        stats = ([], [], [], [])  # μ, ρ of the recurrent LN and of c_t's, each (N, 1), step by step
        for t in range(L):
            torch.mm(Hs[t], w_t, out=Rec[t])
            ln, mu, rho = torch.native_layer_norm(Rec[t], (H4,), a_hh, b_hh, EPS)
            torch.add(ln, Xp[t], out=Gates[t])
            IF[t].sigmoid_(), Gg[t].tanh_(), Og[t].sigmoid_()
            torch.mul(Fg[t], Cs[t], out=C_new[t]).addcmul_(Ig[t], Gg[t])
            ln_c, mu_c, rho_c = torch.native_layer_norm(C_new[t], (H,), a_c, b_c, EPS)
            torch.mul(Og[t], torch.tanh(ln_c, out=T[t]), out=H_new[t])
            for saved, stat in zip(stats, (mu, rho, mu_c, rho_c)):
                saved.append(stat)
            if mask is not None:
                torch.where(mask[t], H_new[t], Hs[t], out=Hs[t + 1])
                torch.where(mask[t], C_new[t], Cs[t], out=Cs[t + 1])
        mu, rho, mu_c, rho_c = (torch.stack(saved) for saved in stats)
        ctx.save_for_backward(rec, mu, rho, mu_c, rho_c, gates, tanh_c, c_new, hs, cs, w_hh, a_hh, a_c, mask)
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone(), cs[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last, dc_last):
        rec, mu, rho, mu_c, rho_c, gates, tanh_c, c_new, hs, cs, w_hh, a_hh, a_c, mask = ctx.saved_tensors
        L, N, H = tanh_c.shape
        dy, m, keep = _masked(mask, dy.contiguous())  # m, keep: the mask as 1/0 and 0/1 (or None)
        d_pre = torch.empty_like(gates)  # dL/d(i, f, g, o pre-activations) = dL/dxp
        d_rec = torch.empty_like(rec)  # dL/d(θ_h h_{t-1})
        d_ln = tanh_c.new_empty(N, H)  # dL/d LN(c_t)
        da_hh, db_hh, da_c, db_c = (torch.zeros_like(a) for a in (a_hh, a_hh, a_c, a_c))
        DI, DF, DG, DO = (u.unbind(0) for u in d_pre.view(L, N, 4, H).unbind(2))
        D_pre, D_rec, DY = (t.unbind(0) for t in (d_pre, d_rec, dy))
        Rec, C_new = rec.unbind(0), c_new.unbind(0)
        Mu, Rho, Mu_c, Rho_c = (u.unbind(0) for u in (mu, rho, mu_c, rho_c))
        # the input's, the gain's and the shift's gradient of each LN (the op reads the shift
        # only for its shape, the gain's: the gain stands in for it)
        every_grad = [True, True, True]
        gh, gc = DY[L - 1] + dh_last, dc_last
        for hi in range(L, 0, -CHUNK):  # the factors of CHUNK steps at a time: they stay in cache
            lo = max(hi - CHUNK, 0)
            factors = _backward_factors(gates[lo:hi], tanh_c[lo:hi], cs[lo:hi])
            DO_dh, Dlnc_dh, DI_dc, DF_dc, DG_dc, Fg = factors
            for t in range(hi - 1, lo - 1, -1):
                k = t - lo
                if m is not None:  # a padded step's state is the last one's: its gradient passes back
                    kept_h, kept_c = gh * keep[t], gc * keep[t]
                    gh, gc = gh * m[t], gc * m[t]
                torch.mul(gh, DO_dh[k], out=DO[t])
                d_ln = torch.mul(gh, Dlnc_dh[k], out=d_ln)  # dL/d LN(c_t)
                dc, da, db = LN_BACKWARD(d_ln, C_new[t], (H,), Mu_c[t], Rho_c[t], a_c, a_c, every_grad)
                da_c.add_(da), db_c.add_(db)
                dc.add_(gc)
                torch.mul(dc, DI_dc[k], out=DI[t])
                torch.mul(dc, DF_dc[k], out=DF[t])
                torch.mul(dc, DG_dc[k], out=DG[t])
                gc = dc.mul_(Fg[k])  # to c_{t-1}
                d_r, da, db = LN_BACKWARD(D_pre[t], Rec[t], (4 * H,), Mu[t], Rho[t], a_hh, a_hh, every_grad)
                da_hh.add_(da), db_hh.add_(db)
                D_rec[t].copy_(d_r)
                gh = torch.addmm(DY[t - 1], d_r, w_hh) if t > 0 else d_r @ w_hh
                if m is not None:
                    gh, gc = gh + kept_h, gc + kept_c
        dw_hh = d_rec.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return d_pre, gh, gc, dw_hh, da_hh, db_hh, da_c, db_c, None


LN_BACKWARD = torch.ops.aten.native_layer_norm_backward.default
"""LayerNorm's own backward (the op autograd calls for ``F.layer_norm``): dL/da, dL/dα and
dL/dβ from dL/d LN(a), the input a, its μ and ρ, and the gain α (asked for dL/da alone it
measured slower on a CPU than for all three)."""


def _backward_factors(gates: Tensor, tanh_c: Tensor, c_prev: Tensor) -> list:
    """Every factor of the backward step that does not wait for the incoming gradient, for a
    run of steps at once, each as the tuple of its steps (σ' = σ − σ², tanh' = 1 − tanh², each
    product formed in as few passes as it takes).

    h = o tanh(LN(c)), c = f c_{t-1} + i g, (i, f, g, o) = σ, σ, tanh, σ of
    LN(θ_h h_{t-1}) + xp."""
    H = tanh_c.shape[-1]
    i_f, g, o = gates.split((2 * H, H, H), dim=-1)
    o_tanh = o * tanh_c
    do_dh = torch.addcmul(o_tanh, o_tanh, o, value=-1.0)  # dL/dõ = dL/dh tanh(LN c) σ'(õ)
    dlnc_dh = torch.addcmul(o, o_tanh, tanh_c, value=-1.0)  # dL/d LN(c) = dL/dh o tanh'
    d_if = torch.addcmul(i_f, i_f, i_f, value=-1.0)  # σ'(ĩ), σ'(f̃)
    i, f = i_f.split(H, dim=-1)
    di_dc = d_if[..., :H].mul_(g)  # dL/dĩ = dL/dc g σ'(ĩ)
    df_dc = d_if[..., H:].mul_(c_prev)  # dL/df̃ = dL/dc c_{t-1} σ'(f̃)
    i_g = i * g
    dg_dc = torch.addcmul(i, i_g, g, value=-1.0)  # dL/dg̃ = dL/dc i tanh'(g̃)
    return [t.unbind(0) for t in (do_dh, dlnc_dh, di_dc, df_dc, dg_dc, f)]


def lnlstm_direction(
    cell: LayerNormLSTMCell, x: Tensor, state: LSTMState, p: dict[str, Tensor], mask: Tensor | None
) -> tuple[Tensor, LSTMState]:
    """One direction over ``x`` (L, N, H_in): output (zero at padded steps) and final state.

    Training a layer of at least :data:`KERNEL_FROM` units runs :class:`LNLSTMRecurrence`;
    a narrower one, or one without a gradient to take, the cell's step loop
    (:func:`step_loop`, under autograd in training)."""
    W_x = layer_norm(F.linear(x, p["weight_ih"]), p["ln_ih_weight"], p["ln_ih_bias"])
    if "bias_ih" in p:
        W_x = W_x + (p["bias_ih"] + p["bias_hh"])
    recurrent = [p[k] for k in ("weight_hh", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")]
    training = torch.is_grad_enabled() and any(t.requires_grad for t in (W_x, *state, *recurrent))
    if training and cell.hidden_size >= KERNEL_FROM:
        y, h, c = LNLSTMRecurrence.apply(W_x, *state, *recurrent, mask)
        return y, LSTMState(h, c)
    return step_loop(W_x, state, *recurrent, mask)


def step_loop(
    W_x: Tensor,
    state: LSTMState,
    W_hh: Tensor,
    a_hh: Tensor,
    b_hh: Tensor,
    a_c: Tensor,
    b_c: Tensor,
    mask: Tensor | None,
) -> tuple[Tensor, LSTMState]:
    """The cell's update step by step from W_x = LN(θ_x x) + b (L, N, 4H); differentiable by
    autograd (the kernel's oracle in the tests, and ``bench/cell_paths.py``'s baseline)."""
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
