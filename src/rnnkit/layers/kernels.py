"""Our own recurrences: one GEMM for all inputs, the lecture's single backward sweep.

Each autograd function below runs one layer in one direction over a whole sequence.
The input projections of all steps (``xp = x W_ih^T + b``) are one matrix product
done *outside*, by autograd; the function takes ``xp`` and runs only the part that
must be sequential. Its backward is the lecture's "one last implementation trick":
pass backwards through the sequence once, accumulating the deltas from every E_t, and
form the weight gradients at the end as one matrix product over all steps.

Everything that does not depend on the incoming gradient (gate derivatives, masks) is
computed for all steps at once before the backward loop, so the loop itself is a few
fused element-wise ops and one ``addmm`` per step, written into preallocated buffers.

``mask`` (L, N, 1), if given, marks real tokens (padding only at the end): a padded
step leaves the state as it was and emits zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.elman import derivative

_ACTIVATE = {"sigmoid": torch.sigmoid_, "tanh": torch.tanh_, "relu": torch.relu_}


def _masked(mask: Tensor | None, dy: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """dy zeroed at padding, the mask as a float ``m`` and ``1 - m`` (or two Nones)."""
    if mask is None:
        return dy, None, None
    m = mask.to(dy.dtype)
    return dy * m, m, 1 - m


class ElmanRecurrence(torch.autograd.Function):
    """h_t = f(xp_t + h_{t-1} W_hh^T) for t = 1..L; returns (h_{1..L}, h_L)."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, w_hh: Tensor, mask: Tensor | None, nonlinearity: str):
        L, N, H = xp.shape
        hs = xp.new_empty(L + 1, N, H)
        hs[0] = h0
        activate, w_t = _ACTIVATE[nonlinearity], w_hh.t()
        for t in range(L):
            torch.addmm(xp[t], hs[t], w_t, out=hs[t + 1])
            activate(hs[t + 1])
            if mask is not None:
                torch.where(mask[t], hs[t + 1], hs[t], out=hs[t + 1])
        ctx.save_for_backward(hs, w_hh, mask)
        ctx.nonlinearity = nonlinearity
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dh_last: Tensor):
        hs, w_hh, mask = ctx.saved_tensors
        L = hs.shape[0] - 1
        dy, m, keep = _masked(mask, dy.contiguous())
        D = derivative(hs[1:], ctx.nonlinearity)
        if m is not None:
            D.mul_(m)
        dpre = torch.empty_like(D)
        g = dy[L - 1] + dh_last
        tmp = torch.empty_like(g)
        for t in range(L - 1, -1, -1):
            torch.mul(g, D[t], out=dpre[t])
            g = torch.addmm(_carried(dy, t, g, keep, tmp), dpre[t], w_hh)
        dw_hh = dpre.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return dpre, g, dw_hh, None, None


class GRURecurrence(torch.autograd.Function):
    """The GRU recurrence of :class:`~rnnkit.cells.GRUCell` given xp = x W_ih^T + b_ih.

    ``reset_after=True``: h̃ = tanh(xp_n + r ∘ (U h + b_hn)); ``False``: Cho et al.'s
    h̃ = tanh(xp_n + U (r ∘ h) + b_hn). Returns (h_{1..L}, h_L).
    """

    @staticmethod
    def forward(ctx, xp, h0, w_hh, b_hh, mask, reset_after: bool):
        L, N, H3 = xp.shape
        H = H3 // 3
        hs = xp.new_empty(L + 1, N, H)
        hs[0] = h0
        rz = xp.new_empty(L, N, 2 * H)
        n = xp.new_empty(L, N, H)
        # reset_after: keeps U h + b (L, N, 3H), its n part is needed backwards.
        # reset_before: keeps r ∘ h (L, N, H), the input of U_n.
        aux = xp.new_empty(L, N, 3 * H) if reset_after else xp.new_empty(L, N, H)
        hrz = xp.new_empty(N, 2 * H)
        w_t = w_hh.t()
        for t in range(L):
            h = hs[t]
            if reset_after:
                _affine(h, w_t, b_hh, out=aux[t])
                torch.add(xp[t, :, : 2 * H], aux[t, :, : 2 * H], out=rz[t])
            else:
                _affine(h, w_t[:, : 2 * H], None if b_hh is None else b_hh[: 2 * H], out=hrz)
                torch.add(xp[t, :, : 2 * H], hrz, out=rz[t])
            rz[t].sigmoid_()
            r, z = rz[t, :, :H], rz[t, :, H:]
            if reset_after:
                torch.addcmul(xp[t, :, 2 * H :], r, aux[t, :, 2 * H :], out=n[t])
            else:
                torch.mul(r, h, out=aux[t])
                _affine(aux[t], w_t[:, 2 * H :], None if b_hh is None else b_hh[2 * H :], out=n[t])
                n[t].add_(xp[t, :, 2 * H :])
            n[t].tanh_()
            # h_t = z ∘ h_{t-1} + (1 - z) ∘ h̃ = h̃ + z ∘ (h_{t-1} - h̃)
            torch.lerp(n[t], h, z, out=hs[t + 1])
            if mask is not None:
                torch.where(mask[t], hs[t + 1], h, out=hs[t + 1])
        ctx.save_for_backward(hs, rz, n, aux, w_hh, mask)
        ctx.reset_after, ctx.has_bias = reset_after, b_hh is not None
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last):
        hs, rz, n, aux, w_hh, mask = ctx.saved_tensors
        L, N, H = n.shape
        reset_after = ctx.reset_after
        dy, m, keep = _masked(mask, dy.contiguous())
        h_prev, r, z = hs[:-1], rz[..., :H], rz[..., H:]
        # Coefficients of the incoming gradient g = dL/dh_t, for all steps at once.
        A = (1 - z) * (1 - n * n)  # dpre_n = g ∘ A
        C = (h_prev - n) * z * (1 - z)  # dpre_z = g ∘ C
        Zc = z.clone()  # dh_{t-1} ∋ g ∘ z
        # dpre_r = (dL/d(r-product)) ∘ B
        B = (aux[..., 2 * H :] if reset_after else h_prev) * r * (1 - r)
        if m is not None:
            A.mul_(m)
            C.mul_(m)
            Zc.mul_(m).add_(keep)
        # dxp = [dpre_r | dpre_z | dpre_n]. reset_after: d_hh = d(U h + b_hh) =
        # [dpre_r | dpre_z | dpre_n ∘ r], so one addmm per step and one GEMM for dW_hh.
        # reset_before: d_hh = [dpre_r | dpre_z] and U_n gets d(r ∘ h) separately.
        dxp = aux.new_empty(L, N, 3 * H)
        d_hh = torch.empty_like(dxp) if reset_after else dxp[..., : 2 * H]
        g = dy[L - 1] + dh_last
        d_rh = torch.empty_like(g)  # d(r ∘ h), reset before
        tmp = torch.empty_like(g)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        for t in range(L - 1, -1, -1):
            d_n = dxp[t, :, 2 * H :]
            torch.mul(g, A[t], out=d_n)
            torch.mul(g, C[t], out=d_hh[t, :, H : 2 * H])
            base = torch.mul(g, Zc[t], out=tmp) if t == 0 else torch.addcmul(dy[t - 1], g, Zc[t], out=tmp)
            if reset_after:
                torch.mul(d_n, r[t], out=d_hh[t, :, 2 * H :])
                torch.mul(d_n, B[t], out=d_hh[t, :, :H])
                g = torch.addmm(base, d_hh[t], w_hh)
            else:
                torch.mm(d_n, w_n, out=d_rh)
                torch.mul(d_rh, B[t], out=d_hh[t, :, :H])
                base.addcmul_(d_rh, r[t])
                g = torch.addmm(base, d_hh[t], w_rz)
        flat_h = h_prev.flatten(0, 1)
        if reset_after:
            dxp[..., : 2 * H] = d_hh[..., : 2 * H]
            flat = d_hh.flatten(0, 1)
            dw_hh = flat.t() @ flat_h
            db_hh = flat.sum(0) if ctx.has_bias else None
        else:
            flat = dxp.flatten(0, 1)
            dw_hh = torch.cat([flat[:, : 2 * H].t() @ flat_h, flat[:, 2 * H :].t() @ aux.flatten(0, 1)])
            db_hh = flat.sum(0) if ctx.has_bias else None
        return dxp, g, dw_hh, db_hh, None, None


class LSTMRecurrence(torch.autograd.Function):
    """The LSTM recurrence of :class:`~rnnkit.cells.LSTMCell` given xp = x W_ih^T + b.

    Returns (h_{1..L}, h_L, c_L).
    """

    @staticmethod
    def forward(ctx, xp, h0, c0, w_hh, mask):
        L, N, H4 = xp.shape
        H = H4 // 4
        hs = xp.new_empty(L + 1, N, H)
        cs = xp.new_empty(L + 1, N, H)
        gates = xp.new_empty(L, N, 4 * H)  # activated i | f | g | o
        tanh_c = xp.new_empty(L, N, H)
        hs[0], cs[0] = h0, c0
        w_t = w_hh.t()
        for t in range(L):
            G = gates[t]
            torch.addmm(xp[t], hs[t], w_t, out=G)
            G[:, : 2 * H].sigmoid_()
            G[:, 2 * H : 3 * H].tanh_()
            G[:, 3 * H :].sigmoid_()
            i_t, f_t, g_t, o_t = G[:, :H], G[:, H : 2 * H], G[:, 2 * H : 3 * H], G[:, 3 * H :]
            torch.mul(f_t, cs[t], out=cs[t + 1]).addcmul_(i_t, g_t)
            torch.tanh(cs[t + 1], out=tanh_c[t])
            torch.mul(o_t, tanh_c[t], out=hs[t + 1])
            if mask is not None:
                torch.where(mask[t], hs[t + 1], hs[t], out=hs[t + 1])
                torch.where(mask[t], cs[t + 1], cs[t], out=cs[t + 1])
        ctx.save_for_backward(hs, cs, gates, tanh_c, w_hh, mask)
        y = hs[1:] if mask is None else hs[1:] * mask
        return y, hs[L].clone(), cs[L].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last, dc_last):
        hs, cs, gates, tanh_c, w_hh, mask = ctx.saved_tensors
        L, N, H = tanh_c.shape
        dy, m, keep = _masked(mask, dy.contiguous())
        i, f, g_, o = gates.split(H, dim=-1)
        # dpre_o = dh ∘ Po;  dc = dc_next + dh ∘ Q;  dpre_{i,f,g} = dc ∘ P3;  dc_prev = dc ∘ Fc
        Po = tanh_c * o * (1 - o)
        Q = o * (1 - tanh_c * tanh_c)
        P3 = torch.stack([g_ * i * (1 - i), cs[:-1] * f * (1 - f), i * (1 - g_ * g_)], dim=2)
        Fc = f.clone()
        if m is not None:
            Po.mul_(m)
            Q.mul_(m)
            P3.mul_(m.unsqueeze(2))
            Fc.mul_(m).add_(keep)
        d_gates = torch.empty_like(gates)
        gh = dy[L - 1] + dh_last
        gc = dc_last.clone()
        dc = torch.empty_like(gc)
        tmp = torch.empty_like(gh)
        for t in range(L - 1, -1, -1):
            torch.addcmul(gc, gh, Q[t], out=dc)
            torch.mul(gh, Po[t], out=d_gates[t, :, 3 * H :])
            torch.mul(dc.unsqueeze(1), P3[t], out=d_gates[t, :, : 3 * H].view(N, 3, H))
            torch.mul(dc, Fc[t], out=gc)
            gh = torch.addmm(_carried(dy, t, gh, keep, tmp), d_gates[t], w_hh)
        dw_hh = d_gates.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)
        return d_gates, gh, gc, dw_hh, None


def _carried(dy: Tensor, t: int, g: Tensor, keep: Tensor | None, tmp: Tensor) -> Tensor:
    """dL/dh_{t-1} but for the recurrent product: dy_{t-1} (nothing before the first
    step), plus all of g = dL/dh_t where step t is padding (its state passed straight through)."""
    base = dy[t - 1] if t > 0 else torch.zeros_like(g)
    if keep is not None:
        base = torch.addcmul(base, g, keep[t], out=tmp)
    return base


def _affine(x: Tensor, w_t: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """out = x w_t + b, without a bias when b is None."""
    if b is None:
        return torch.mm(x, w_t, out=out)
    return torch.addmm(b, x, w_t, out=out)
