"""The sLSTM of xLSTM (issue 22): Beck et al. 2024 §2.2 by hand, the stabiliser, fast = reference.

A pure-Python oracle (floats, the paper's equations 8-17 written out) against the cell's step;
the stabilised form against the unstabilised one in float64; large pre-activations; the fast
path (:mod:`rnnkit.layers.slstm`) against the reference loop in float64 with gradients, with
and without lengths, one and two directions and layers; ``gradcheck``; a language model through
the real console script, the stream, and ONNX's one-line refusal.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rnnkit
from conftest import F64, assert_all_close, run_and_grad, write_toy_lm_corpus
from rnnkit.cells import SLSTMCell, SLSTMState
from rnnkit.cells.slstm import slstm_update
from rnnkit.cli.main import main
from rnnkit.data.text import Codec
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError
from rnnkit.layers.slstm import CHUNK, SLSTMRecurrence

SCRIPT = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin" / "rnnkit"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
LENGTHS = [7, 3, 5, 1]
D64 = torch.float64


def _matvec(W: list[list[float]], v: list[float]) -> list[float]:
    return [sum(w * x for w, x in zip(row, v)) for row in W]


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _zeros(n: int, H: int, dtype: torch.dtype = D64) -> SLSTMState:
    return SLSTMState(*(torch.zeros(n, H, dtype=dtype) for _ in range(4)))


@pytest.mark.parametrize("start", ["zeros", "given"])
@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
def test_three_steps_by_hand_from_the_papers_equations(forget, start):
    torch.manual_seed(3)
    cell = SLSTMCell(3, 2, forget=forget, dtype=D64)
    P = {name: p.tolist() for name, p in cell.named_parameters()}
    b = [u + v for u, v in zip(P["bias_ih"], P["bias_hh"])]
    xs = torch.randn(3, 1, 3, dtype=D64)
    h, c, n, m = [0.2, -0.4], [0.5, 0.1], [1.5, 0.7], [0.3, -0.2]
    if start == "zeros":
        h, c, n, m = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    state = SLSTMState(*(torch.tensor([v], dtype=D64) for v in (h, c, n, m)))
    for t in range(3):
        pre = [
            u + v + w
            for u, v, w in zip(_matvec(P["weight_ih"], xs[t, 0].tolist()), _matvec(P["weight_hh"], h), b)
        ]
        i_pre, f_pre, z_pre, o_pre = pre[0:2], pre[2:4], pre[4:6], pre[6:8]
        log_i = i_pre  # eq. 12: i = exp(ĩ)
        log_f = f_pre if forget == "exp" else [math.log(_sigmoid(v)) for v in f_pre]  # eq. 13
        # eq. 15; from an empty normaliser (n = 0) the forget branch scales nothing: m = log i
        m_new = [max(lf + mj, li) if nj > 0 else li for lf, mj, li, nj in zip(log_f, m, log_i, n)]
        i_s = [math.exp(li - mn) for li, mn in zip(log_i, m_new)]  # eq. 16
        f_s = [math.exp(lf + mj - mn) for lf, mj, mn in zip(log_f, m, m_new)]  # eq. 17
        z = [math.tanh(v) for v in z_pre]  # eq. 11
        o = [_sigmoid(v) for v in o_pre]  # eq. 14
        c = [fj * cj + ij * zj for fj, cj, ij, zj in zip(f_s, c, i_s, z)]  # eq. 8
        n = [fj * nj + ij for fj, nj, ij in zip(f_s, n, i_s)]  # eq. 9
        h = [oj * cj / nj for oj, cj, nj in zip(o, c, n)]  # eq. 10
        m = m_new
        state = cell(xs[t], state)
        for got, want in zip(state, (h, c, n, m)):
            assert got[0].tolist() == pytest.approx(want, rel=1e-12, abs=1e-14)


def _unstabilised(cell: SLSTMCell, xs: torch.Tensor) -> list[torch.Tensor]:
    """h_t from eqs. 8-14 as written, exp(ĩ) and the forget gate taken as they are (no m)."""
    N, H = xs.shape[1], cell.hidden_size
    h, c, n = (torch.zeros(N, H, dtype=xs.dtype) for _ in range(3))
    hs = []
    for x in xs:
        pre = F.linear(x, cell.weight_ih, cell.bias_ih) + F.linear(h, cell.weight_hh, cell.bias_hh)
        i_pre, f_pre, z_pre, o_pre = pre.chunk(4, -1)
        i, f = torch.exp(i_pre), (torch.exp(f_pre) if cell.forget == "exp" else torch.sigmoid(f_pre))
        c = f * c + i * torch.tanh(z_pre)
        n = f * n + i
        h = torch.sigmoid(o_pre) * c / n
        hs.append(h)
    return hs


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
def test_the_stabiliser_does_not_change_h(forget):
    torch.manual_seed(0)
    cell = SLSTMCell(3, 4, forget=forget, dtype=D64)
    with torch.no_grad():
        cell.weight_ih.mul_(8.0)  # pre-activations of tens: m_t far from 0, exp(ĩ) still finite
    xs = torch.randn(20, 5, 3, dtype=D64)
    state, ms = _zeros(5, 4), []
    with torch.no_grad():
        expected = _unstabilised(cell, xs)
        for x, want in zip(xs, expected):
            state = cell(x, state)
            ms.append(state.m.abs().max())
            torch.testing.assert_close(state.h, want, rtol=1e-10, atol=1e-12)
    assert max(ms) > 5.0  # the stabiliser did move


def test_large_pre_activations_give_finite_h_in_float32():
    torch.manual_seed(0)
    cell = SLSTMCell(3, 4, forget="exp")
    with torch.no_grad():  # pre-activations of +100 and beyond: exp overflows float32 unstabilised
        cell.weight_ih.abs_().mul_(300.0)
        cell.weight_hh.mul_(10.0)
    xs = torch.rand(30, 5, 3) + 0.2
    state = _zeros(5, 4, torch.float32)
    with torch.no_grad():
        assert not all(torch.isfinite(h).all() for h in _unstabilised(cell, xs))
        for x in xs:
            state = cell(x, state)
            assert all(torch.isfinite(t).all() for t in state)
    assert state.m.max() > 100.0 and state.n.min() >= 1.0


def test_gradcheck_cell():
    torch.manual_seed(0)
    cell = SLSTMCell(3, 4, dtype=D64)
    names = [name for name, _ in cell.named_parameters()]
    x = torch.randn(2, 3, dtype=D64, requires_grad=True)
    h, c = (torch.randn(2, 4, dtype=D64, requires_grad=True) for _ in range(2))
    n = torch.rand(2, 4, dtype=D64).add(0.5).requires_grad_(True)
    m = torch.randn(2, 4, dtype=D64, requires_grad=True)

    def step(x, h, c, n, m, *weights):
        return tuple(torch.func.functional_call(cell, dict(zip(names, weights)), (x, SLSTMState(h, c, n, m))))

    assert torch.autograd.gradcheck(step, (x, h, c, n, m, *cell.parameters()))


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize(
    "options",
    [{}, {"bias": False, "learn_initial_state": True, "forget": "exp"}],
    ids=["bias", "h0-exp"],
)
def test_fast_path_equals_reference_in_float64(options, bidirectional, layers, with_lengths):
    torch.manual_seed(0)
    ref = rnnkit.rnn("slstm", 3, 5, layers, bidirectional, impl="reference", dtype=D64, **options)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    fast = rnnkit.rnn("slstm", 3, 5, layers, bidirectional, dtype=D64, **options)
    fast.load_state_dict(ref.state_dict(), strict=True)
    assert fast._kernel(torch.device("cpu"), D64, with_lengths).__name__ == "own_layer"
    x = torch.randn(7, 4, 3, dtype=D64)
    lengths = LENGTHS if with_lengths else None
    out_r, finals_r, grads_r = run_and_grad(ref, x, lengths)
    out_f, finals_f, grads_f = run_and_grad(fast, x, lengths)
    assert len(finals_r) == 4 and finals_r[0].shape == (layers * (1 + bidirectional), 4, 5)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(finals_f, finals_r, **F64)
    assert all(g is not None for g in grads_r)
    assert_all_close(grads_f, grads_r, **F64)


def _kernel_inputs(exp_forget: bool, seed: int = 0):
    """xp, a state, W_hh and a mask. Row 2 has ĩ = log f̃ + m exactly at step 0 (the maximum's tie,
    with the exp forget gate); row 3 starts with n = 0 and a forget gate far above ĩ (so f'_t's
    exponent is above 0 and clamped) and keeps a c ≠ 0 there (outside the cell's contract, so
    that the clamp's gradient shows)."""
    torch.manual_seed(seed)
    L, N, H = 6, 4, 3
    xp = 2.0 * torch.randn(L, N, 4 * H, dtype=D64)
    h, c = torch.randn(N, H, dtype=D64), torch.randn(N, H, dtype=D64)
    n, m = torch.rand(N, H, dtype=D64) + 0.5, torch.randn(N, H, dtype=D64)
    n[3], m[3] = 0.0, 0.0  # c stays: the clamp's gradient shows only where c_{t-1} or n_{t-1} is not 0
    w_hh = 0.3 * torch.randn(4 * H, H, dtype=D64)
    # row 2: h_0 = 0 and no recurrent input at step 0, ĩ = f̃ (exp forget) with m_0 = 0
    h[2], m[2] = 0.0, 0.0
    if exp_forget:
        xp[0, 2, H : 2 * H] = xp[0, 2, :H]
    xp[0, 3, :H], xp[0, 3, H : 2 * H] = -5.0, 30.0
    mask = torch.tensor([6, 6, 4, 1]).gt(torch.arange(L)[:, None]).unsqueeze(-1)
    return xp, (h, c, n, m), w_hh, mask


def _reference_recurrence(xp, state, w_hh, mask, exp_forget):
    """The loop of the cell's own update, differentiated by autograd: the kernel's oracle."""
    state, outputs = SLSTMState(*state), []
    for t in range(xp.shape[0]):
        new = slstm_update(xp[t] + F.linear(state.h, w_hh), state, exp_forget)[0]
        state = new if mask is None else SLSTMState(*(torch.where(mask[t], a, b) for a, b in zip(new, state)))
        outputs.append(state.h)
    y = torch.stack(outputs)
    return (y if mask is None else y.masked_fill(~mask, 0.0), *state)


@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("exp_forget", [False, True], ids=["sigmoid", "exp"])
def test_kernel_equals_autograd_through_the_update_with_a_given_state(exp_forget, with_mask):
    xp, state, w_hh, mask = _kernel_inputs(exp_forget)
    mask = mask if with_mask else None
    leaves = [t.clone().requires_grad_(True) for t in (xp, *state, w_hh)]
    got = SLSTMRecurrence.apply(*leaves[:5], leaves[5], mask, exp_forget)
    want = _reference_recurrence(*leaves[:1], leaves[1:5], leaves[5], mask, exp_forget)
    assert_all_close(list(got), list(want), **F64)
    if exp_forget:  # the tie was there: both arguments of the maximum equal at step 0, row 2
        H = 3
        assert (
            torch.equal(xp[0, 2, :H], xp[0, 2, H : 2 * H]) and state[2][2].min() > 0
        )  # n > 0: the maximum decides m
    weights = [torch.randn_like(t) for t in want]
    grads = [
        torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, out)), leaves) for out in (got, want)
    ]
    assert_all_close(list(grads[0]), list(grads[1]), **F64)
    assert all(g.abs().sum() > 0 for g in grads[0])  # every input reached, the state's n and m too


@pytest.mark.parametrize("length", [70, 7], ids=["three-chunks", "one-chunk"])
def test_kernel_over_several_backward_chunks_and_without_grad(length):
    """70 steps: the backward's factors come in three runs of CHUNK steps. Without a gradient
    the layer takes the step loop instead: the same outputs."""
    assert length > 2 * CHUNK or length < CHUNK
    torch.manual_seed(2)
    ref = rnnkit.rnn("slstm", 3, 4, 2, True, impl="reference", dtype=D64)
    fast = rnnkit.rnn("slstm", 3, 4, 2, True, dtype=D64)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(length, 3, 3, dtype=D64)
    lengths = [length, length // 2, 5]
    out_r, finals_r, grads_r = run_and_grad(ref, x, lengths)
    out_f, finals_f, grads_f = run_and_grad(fast, x, lengths)
    torch.testing.assert_close(out_f, out_r, **F64)
    assert_all_close(finals_f, finals_r, **F64)
    assert_all_close(grads_f, grads_r, **F64)
    with torch.no_grad():
        out_n, final_n = fast(x, lengths=lengths)
    torch.testing.assert_close(out_n, out_r, **F64)
    assert_all_close(list(final_n), finals_r, **F64)


@pytest.mark.parametrize("exp_forget", [False, True], ids=["sigmoid", "exp"])
def test_gradcheck_kernel(exp_forget):
    xp, state, w_hh, mask = _kernel_inputs(exp_forget, seed=1)
    xp = xp[:4, :, :]
    mask = mask[:4]
    inputs = [t.clone().requires_grad_(True) for t in (xp, *state, w_hh)]
    H = 3
    if exp_forget:  # gradcheck perturbs around a tie, where max is not differentiable: move off it
        with torch.no_grad():
            inputs[0][0, 2, H : 2 * H] += 0.1

    zero_start = inputs[3].detach() == 0  # n = 0 there: n's finite difference would leave the zero start

    def run(xp, h, c, n, m, w_hh):
        n = n.masked_fill(zero_start, 0.0)
        return SLSTMRecurrence.apply(xp, h, c, n, m, w_hh, mask, exp_forget)

    assert torch.autograd.gradcheck(run, tuple(inputs))


def test_padding_changes_nothing_real_and_a_state_passes_back_in():
    torch.manual_seed(1)
    rnn = rnnkit.rnn("slstm", 3, 4, 2, True, dtype=D64)
    x = torch.randn(7, 4, 3, dtype=D64)
    garbage = x.clone()
    for i, length in enumerate(LENGTHS):
        garbage[length:, i] = 50.0
    out, final = rnn(x, lengths=LENGTHS)
    out_g, final_g = rnn(garbage, lengths=LENGTHS)
    torch.testing.assert_close(out_g, out, rtol=0, atol=0)
    assert isinstance(final, SLSTMState)
    assert_all_close(list(final_g), list(final), rtol=0, atol=0)
    # Two halves with the state carried = the whole (uni: a bidirectional half would read backwards).
    uni = rnnkit.rnn("slstm", 3, 4, 2, dtype=D64)
    whole, end = uni(x)
    first, mid = uni(x[:3])
    second, end2 = uni(x[3:], tuple(mid))
    torch.testing.assert_close(torch.cat([first, second]), whole, **F64)
    assert_all_close(list(end2), list(end), **F64)
    with pytest.raises(RnnkitError, match=r"state must be a tuple \(h_0, c_0, n_0, m_0\) for SLSTMCell"):
        uni(x, (end.h, end.c))


def test_learned_initial_state_is_h0_with_c_n_and_m_at_zero():
    torch.manual_seed(0)
    cell = SLSTMCell(3, 4, learn_initial_state=True, dtype=D64)
    assert [n for n, _ in cell.named_parameters() if n.endswith("_0")] == ["h_0"]
    with torch.no_grad():
        cell.h_0.fill_(0.5)
    state = cell.initial_state(2)
    assert isinstance(state, SLSTMState)
    assert state.h.tolist() == [[0.5] * 4] * 2
    assert all(t.abs().sum() == 0 and t.shape == (2, 4) for t in state[1:])
    with pytest.raises(RnnkitError, match="forget must be one of"):
        SLSTMCell(3, 4, forget="tanh")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """An sLSTM language model trained by the real ``rnnkit train``."""
    root = tmp_path_factory.mktemp("slstm")
    (root / "lm").mkdir()
    data = write_toy_lm_corpus(root / "lm", vocab=8, length=6, train=60, valid=10)
    out = root / "lm-run"
    proc = subprocess.run(
        [str(SCRIPT), "train", "--data", str(data), "--model.cell=slstm", "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_language_model_trains_through_the_console_script_and_evaluates(lm_run):
    assert json.loads((lm_run / "config.json").read_text())["model"]["cell"] == "slstm"
    proc = subprocess.run(
        [str(SCRIPT), "evaluate", str(lm_run), "--split", "valid"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0 and "ppl" in proc.stdout, proc.stderr
    trained = rnnkit.load(lm_run)
    assert math.isfinite(trained.score(["w1 w2 w3"])[0]["logprob"])


def test_onnx_export_is_refused_in_one_line(lm_run, tmp_path, capsys):
    target = tmp_path / "model.onnx"
    assert main(["export", str(lm_run), "--format", "onnx", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "SLSTMCell has no ONNX export yet" in err, err
    assert not target.exists()


WORDS = [f"w{i}" for i in range(12)]
VOCAB = Vocab([UNK, EOS, *WORDS])
WORD = Codec("word")


def test_a_carried_slstm_state_survives_the_checkpoint_record():
    from rnnkit.training.state import _hidden, _hidden_kind

    state = SLSTMState(*(torch.randn(2, 3, 4) for _ in range(4)))
    tensors = {f"hidden.{name}": t for name, t in zip(state._fields, state)}
    back = _hidden(_hidden_kind(state), tensors, torch.device("cpu"))
    assert isinstance(back, SLSTMState) and all(torch.equal(a, b) for a, b in zip(back, state))


def test_diagnose_a_fresh_slstm_shows_its_stabilised_gates_and_w_hh(tmp_path):
    out = tmp_path / "diagnose"
    assert main(["diagnose", "--cell", "slstm", "--hidden", "6", "--length", "12", "--out", str(out)]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    assert "spectrum" in report and (out / "gate_forget.png").exists() and (out / "gate_input.png").exists()


def test_the_exp_forget_gate_is_a_setting_and_only_the_slstms(tmp_path):
    """``model.forget = exp`` trains an sLSTM whose loaded cells use exp(f~); on another cell the
    setting is a one-line error from the console script, not silently ignored."""
    data = write_toy_lm_corpus(tmp_path, vocab=8, length=6, train=40, valid=8)
    out = tmp_path / "exp-run"
    args = ["train", "--data", str(data), "--model.cell=slstm", "--model.forget=exp", "--out", str(out)]
    proc = subprocess.run([str(SCRIPT), *args, *TINY], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["model"]["forget"] == "exp"
    cells = rnnkit.load(out).model.rnn.cells
    assert [c.forget for c in cells] == ["exp"] * len(cells)
    wrong = [*args[:3], "--model.cell=lstm", "--model.forget=exp", "--out", str(tmp_path / "no")]
    proc = subprocess.run([str(SCRIPT), *wrong, *TINY], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0
    assert "model.forget = 'exp' does not apply to cell 'lstm'" in proc.stderr
