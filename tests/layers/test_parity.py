"""Parity: reference path, fast path and torch's own module compute the same function.

Outputs, final states and the gradients of the input, the initial state and every
parameter, for every cell x uni/bi x 1-3 layers x with/without lengths; float64 with
tight tolerances, and float32 on the production path (oneDNN included).
"""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import CELL_CASES, CELL_IDS, F32, F64, assert_all_close, build, run_and_grad, torch_twin
from rnnkit.layers import fast

LENGTHS = [7, 3, 5, 1]  # N = 4, L = 7, unsorted, one of length 1


def random_state(module, batch, dtype):
    shape = (module.num_layers * module.num_directions, batch, module.hidden_size)
    h = torch.randn(shape, dtype=dtype)
    return (h, torch.randn(shape, dtype=dtype)) if module.cell.has_cell_state else h


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_float64_reference_fast_and_torch_agree(case, bidirectional, layers, with_lengths):
    _, cell, options, spec = case
    module = build(cell, options, 5, 6, layers, bidirectional, torch.float64)
    torch.manual_seed(1)
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    state = random_state(module, 4, torch.float64)
    lengths = LENGTHS if with_lengths else None

    module.impl = "reference"
    expected = run_and_grad(module, x, lengths, state)
    has_native = fast.native_op(module.cell) is not None  # the sigmoid Elman too (as tanh)
    for impl in ("auto", "own") + (("native",) if has_native else ()):
        module.impl = impl
        out, finals, grads = run_and_grad(module, x, lengths, state)
        assert_all_close([out, *finals, *grads], [expected[0], *expected[1], *expected[2]], **F64)
    if spec is not None:
        twin = torch_twin(module, spec, torch.float64)
        out, finals, grads = run_and_grad(twin, x, lengths, state, torch_module=True)
        assert_all_close([out, *finals, *grads], [expected[0], *expected[1], *expected[2]], **F64)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_float32_production_path_matches(case, bidirectional, with_lengths):
    """The fast path users train with (oneDNN included), in float32, against the truth.

    The oracle is the same function with the same (float32) weights and input computed
    in float64, by torch's module where torch has the cell, else by our reference path;
    so the tolerance bounds the float32 path's own rounding error.
    """
    _, cell, options, spec = case
    # Sized so that float32 itself can meet the tolerance: torch's own fp32 modules
    # miss rtol=1e-5/atol=1e-6 against float64 once gradients sum ~1000 terms.
    module = build(cell, options, 8, 16, 2, bidirectional, torch.float32)
    torch.manual_seed(2)
    x = torch.randn(8, 4, 8)
    lengths = [8, 5, 1, 8] if with_lengths else None
    module.impl = "auto"
    actual = run_and_grad(module, x, lengths)
    truth = copy.deepcopy(module).double()
    if spec is not None:
        expected = run_and_grad(
            torch_twin(truth, spec, torch.float64), x.double(), lengths, torch_module=True
        )
    else:
        truth.impl = "reference"
        expected = run_and_grad(truth, x.double(), lengths)
    expected = [t.float() for t in (expected[0], *expected[1], *expected[2])]
    assert_all_close([actual[0], *actual[1], *actual[2]], expected, **F32)


@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_learned_initial_state_parity(case):
    _, cell, options, _ = case
    module = build(cell, options, 4, 5, 2, True, torch.float64, learn_initial_state=True)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith(("h_0", "c_0")):
                p.normal_()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    module.impl = "reference"
    expected = run_and_grad(module, x, [6, 2, 4])
    module.impl = "auto"
    actual = run_and_grad(module, x, [6, 2, 4])
    assert_all_close([actual[0], *actual[1], *actual[2]], [expected[0], *expected[1], *expected[2]], **F64)
    grads = dict(zip([n for n, _ in module.named_parameters()], actual[2][1:]))
    assert grads["h_0_l0"].abs().sum() > 0 and grads["h_0_l1_reverse"].abs().sum() > 0


@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_dropout_between_layers_same_in_both_paths_and_off_in_eval(case):
    _, cell, options, _ = case
    module = build(cell, options, 4, 8, 3, True, torch.float64, dropout=0.5)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    outputs = {}
    for impl in ("reference", "auto"):
        module.impl = impl
        torch.manual_seed(7)  # same masks: both paths draw them at the same points
        outputs[impl] = run_and_grad(module, x)
    assert_all_close(
        [outputs["auto"][0], *outputs["auto"][2]], [outputs["reference"][0], *outputs["reference"][2]], **F64
    )
    module.eval()
    with torch.no_grad():
        a, _ = module(x)
        b, _ = module(x)
        module.impl = "reference"
        c, _ = module(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, **F64)
    module.train()
    torch.manual_seed(8)
    d, _ = module(x)
    assert not torch.allclose(a, d), "dropout had no effect in training mode"
