"""The AWD-LSTM regularisers: locked dropout, embedding dropout and weight drop.

Weight drop is checked against torch's own module run with the dropped W_hh written into
it (the same mask at every step is what makes the two agree), and every path (reference,
own kernels, fused ops) against the reference with the same seed.
"""

from __future__ import annotations

import pytest
import torch

from conftest import CELL_CASES, CELL_IDS, F64, assert_all_close, build, run_and_grad, torch_twin
from rnnkit.errors import RnnkitError
from rnnkit.layers import fast
from rnnkit.layers.dropout import drop_rows, dropout


def test_locked_dropout_shares_the_mask_over_time_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(6, 400, 50, dtype=torch.float64)
    y = dropout(x, 0.3, training=True, locked=True)
    assert torch.equal(y, y[:1].expand_as(y)), "the mask changed between steps"
    values = set(y.unique().tolist())
    assert values <= {0.0, 1 / 0.7} and len(values) == 2
    assert abs((y[0] == 0).double().mean().item() - 0.3) < 0.02
    fresh = dropout(x, 0.3, training=True, locked=False)
    assert not torch.equal(fresh[0], fresh[1]), "unlocked dropout should draw a mask per step"
    assert dropout(x, 0.3, training=False, locked=True) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_each_entry_with_probability_one_minus_p(p, dtype):
    """Bernoulli(1 - p) masks scaled by 1 / (1 - p), as torch's dropout, and the gradient
    flows through the same mask. 400,000 entries: the keep rate within 5 standard errors."""
    torch.manual_seed(0)
    x = torch.ones(40, 100, 100, dtype=dtype, requires_grad=True)
    y = dropout(x, p, training=True)
    values = y.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p))
    assert y.dtype == dtype
    kept = (y != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 5 * ((p * (1 - p)) / y.numel()) ** 0.5
    y.backward(torch.full_like(y, 3.0))
    torch.testing.assert_close(x.grad, 3.0 * y.detach())
    assert torch.equal(dropout(x.detach(), 1.0, training=True), torch.zeros_like(x))


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    weight = torch.randn(1000, 8, dtype=torch.float64)
    dropped = drop_rows(weight, 0.25, training=True)
    zero_rows = (dropped == 0).all(1)
    kept = ~zero_rows
    assert 0.2 < zero_rows.double().mean().item() < 0.3
    torch.testing.assert_close(dropped[kept], weight[kept] / 0.75, **F64)
    assert drop_rows(weight, 0.25, training=False) is weight


def _dropped_twin(module, spec, masks):
    """torch's module with each W_hh multiplied by its mask: weight drop done by hand."""
    twin = torch_twin(module, spec, torch.float64)
    with torch.no_grad():
        for name, mask in masks.items():
            getattr(twin, name).mul_(mask)
    return twin


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", [c for c in CELL_CASES if c[3] is not None], ids=lambda c: c[0])
def test_weight_drop_is_one_mask_per_forward_like_torch_with_dropped_weights(case, bidirectional):
    _, cell, options, spec = case
    p = 0.4
    module = build(cell, options, 5, 6, 2, bidirectional, torch.float64, weight_drop=p)
    x = torch.randn(9, 3, 5, dtype=torch.float64)
    names = [n for n, _ in module.named_parameters() if n.startswith("weight_hh")]
    torch.manual_seed(11)  # the masks, drawn as the module draws them: one per W_hh, in order
    masks = {n: torch.nn.functional.dropout(torch.ones_like(getattr(module, n)), p) for n in names}
    for impl in ("reference", "own", "auto"):
        module.impl = impl
        torch.manual_seed(11)
        out, finals, grads = run_and_grad(module, x)
        twin = _dropped_twin(module, spec, masks)
        t_out, t_finals, t_grads = run_and_grad(twin, x, torch_module=True)
        assert_all_close([out, *finals, grads[0]], [t_out, *t_finals, t_grads[0]], **F64)
        ours = dict(zip([n for n, _ in module.named_parameters()], grads[1:]))
        theirs = dict(zip([n for n, _ in twin.named_parameters()], t_grads[1:]))
        for name in ours:  # d loss / d W_raw = d loss / d W_dropped * mask
            expected = theirs[name] * masks[name] if name in masks else theirs[name]
            torch.testing.assert_close(ours[name], expected, msg=f"{impl}: {name}", **F64)
    module.eval()  # no weight drop in evaluation: exactly torch's module
    with torch.no_grad():
        torch.testing.assert_close(module(x)[0], torch_twin(module, spec, torch.float64)(x)[0], **F64)


@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_every_path_draws_the_same_regularisers(case):
    _, cell, options, _ = case
    module = build(
        cell, options, 4, 8, 3, True, torch.float64, dropout=0.5, locked_dropout=True, weight_drop=0.3
    )
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    results = {}
    for impl, lengths in (("reference", [6, 2, 4]), ("own", [6, 2, 4]), ("auto", [6, 2, 4])):
        module.impl = impl
        torch.manual_seed(5)
        results[impl] = run_and_grad(module, x, lengths=lengths)
        a, e = results[impl], results["reference"]
        assert_all_close([a[0], *a[1], *a[2]], [e[0], *e[1], *e[2]], **F64)
    if fast.native_op(module.cell) is not None:  # torch's fused op, one layer per call
        full = {}
        for impl in ("reference", "native"):
            module.impl = impl
            torch.manual_seed(5)
            full[impl] = run_and_grad(module, x)
        a, e = full["native"], full["reference"]
        assert_all_close([a[0], *a[1], *a[2]], [e[0], *e[1], *e[2]], **F64)
    module.impl = "reference"
    torch.manual_seed(6)
    other = run_and_grad(module, x, lengths=[6, 2, 4])
    assert not torch.allclose(other[0], results["reference"][0]), "the regularisers had no effect"


def test_native_path_with_weight_drop_matches_the_reference():
    module = build("lstm", {}, 4, 8, 2, False, torch.float64, weight_drop=0.5)  # one fused call
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    results = {}
    for impl in ("reference", "native"):
        module.impl = impl
        torch.manual_seed(3)
        results[impl] = run_and_grad(module, x)
    a, e = results["native"], results["reference"]
    assert_all_close([a[0], *a[1], *a[2]], [e[0], *e[1], *e[2]], **F64)


@pytest.mark.parametrize("value", [1.0, -0.1, True])
def test_weight_drop_must_be_a_probability(value):
    with pytest.raises(RnnkitError, match="weight_drop must be a probability"):
        build("lstm", {}, 4, 8, 1, False, torch.float64, weight_drop=value)


@pytest.mark.parametrize(("cell", "options", "spec"), [(c[1], c[2], c[3]) for c in CELL_CASES if c[3]])
def test_between_layer_dropout_is_off_in_eval_on_every_path(cell, options, spec):
    """In eval mode a stack with dropout runs as one fused call (no dropout to place
    between layers): the same outputs as the reference path and as torch's module."""
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    rnn = build(cell, options, 5, 6, 3, True, torch.float64, dropout=0.4).eval()
    out, finals, _ = run_and_grad(rnn, x)
    twin = torch_twin(rnn, spec, torch.float64)
    twin.dropout = 0.4
    expected, expected_finals, _ = run_and_grad(twin.eval(), x, torch_module=True)
    assert_all_close([out, *finals], [expected, *expected_finals], **F64)
    rnn.impl = "reference"
    reference, reference_finals, _ = run_and_grad(rnn, x)
    assert_all_close([out, *finals], [reference, *reference_finals], **F64)
