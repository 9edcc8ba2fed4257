"""One layer loop in RNN: the reference path is one more layer kernel, beside ours and torch's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rnnkit
from conftest import CELL_CASES, CELL_IDS, F64, assert_all_close, build
from rnnkit.cells import LSTMState, hidden_of
from rnnkit.layers import Bidirectional, Recurrent, Stacked, fast
from rnnkit.layers.recurrent import reference_layer

LENGTHS = [6, 2, 5]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_every_layer_kernel_has_one_signature_and_one_function(case, bidirectional):
    """kernel(cells, params, x, states, lengths) computes the same layer whichever kernel it is."""
    _, cell, options, _ = case
    module = build(cell, options, 3, 4, 1, bidirectional, torch.float64)
    D = module.num_directions
    cells = module.cells[:D]
    params = [module.layer_parameters(d) for d in range(D)]
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS)
    states = [torch.randn(3, 4, dtype=torch.float64) for _ in range(D)]
    if module.cell.has_cell_state:
        states = [LSTMState(h, torch.randn_like(h)) for h in states]
    kernels = [reference_layer, fast.own_layer]
    if fast.native_op(module.cell) is not None:
        kernels.append(fast.native_layer)
    expected = reference_layer(cells, params, x, states, lengths)
    for kernel in kernels[1:]:
        out, finals = kernel(cells, params, x, states, lengths)
        flat = [t for s in finals for t in (s if isinstance(s, tuple) else (s,))]
        want = [t for s in expected[1] for t in (s if isinstance(s, tuple) else (s,))]
        assert_all_close([out, *flat], [expected[0], *want], **F64)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_public_ladder_computes_what_the_rnn_computes(cell):
    """Recurrent -> Bidirectional -> Stacked over working copies of the cells is RNN's function."""
    module = build(cell, {}, 3, 4, 2, True, torch.float64, dropout=0.0)
    module.impl = "reference"
    ladder = Stacked(
        [
            Bidirectional(
                Recurrent(module.standalone_cell(2 * k)),
                Recurrent(module.standalone_cell(2 * k + 1), reverse=True),
            )
            for k in range(2)
        ]
    )
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS)
    out, finals = ladder(x, None, lengths)
    expected, final = module(x, lengths=lengths)
    torch.testing.assert_close(out, expected, **F64)
    h = torch.stack([hidden_of(s) for layer in finals for s in layer])
    torch.testing.assert_close(h, hidden_of(final), **F64)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_forward_hooks_on_the_cells_fire_on_the_reference_path_only(bidirectional):
    module = rnnkit.rnn("lstm", 3, 4, num_layers=2, bidirectional=bidirectional, impl="reference")
    calls = [0] * len(module.cells)
    handles = [
        c.register_forward_hook(lambda m, args, out, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, c in enumerate(module.cells)
    ]
    module(torch.randn(5, 2, 3))
    assert calls == [5] * len(module.cells)  # every layer-direction's cell, at every step
    module.impl = "own"
    module(torch.randn(5, 2, 3))
    assert calls == [5] * len(module.cells)
    for h in handles:
        h.remove()


def test_no_hidden_module_and_no_train_override():
    """Nothing to keep in sync: the RNN's only state is its parameters and its options."""
    module = rnnkit.rnn("gru", 3, 4, num_layers=2, bidirectional=True, dropout=0.2)
    assert type(module).train is nn.Module.train
    assert list(module.children()) == []
    assert not any(isinstance(v, nn.Module) for v in vars(module).values())


def test_a_deep_copy_runs_on_its_own_weights_and_hooks():
    module = rnnkit.rnn("elman", 3, 4, num_layers=2, impl="reference")
    twin = copy.deepcopy(module)
    seen = []
    twin.cells[1].register_forward_hook(lambda m, args, out: seen.append(out))
    with torch.no_grad():
        twin.weight_hh_l1.mul_(2.0)
    x = torch.randn(4, 2, 3)
    assert not torch.allclose(module(x)[0], twin(x)[0])
    assert len(seen) == 4  # twin's hook, not fired by the original
