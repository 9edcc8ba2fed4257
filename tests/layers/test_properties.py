"""Properties over random shapes and lengths (hypothesis): padding never leaks."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from conftest import CELL_CASES, F64, state_tensors

CELLS = [(c[1], c[2]) for c in CELL_CASES]


@st.composite
def problems(draw):
    cell, options = draw(st.sampled_from(CELLS))
    L = draw(st.integers(1, 6))
    N = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, L), min_size=N, max_size=N))
    return {
        "cell": cell,
        "options": options,
        "L": L,
        "lengths": lengths,
        "input_size": draw(st.integers(1, 4)),
        "hidden": draw(st.integers(1, 5)),
        "layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "impl": draw(st.sampled_from(["auto", "own", "reference"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _module(p):
    torch.manual_seed(p["seed"])
    m = rnnkit.rnn(
        p["cell"],
        p["input_size"],
        p["hidden"],
        num_layers=p["layers"],
        bidirectional=p["bidirectional"],
        dtype=torch.float64,
        **p["options"],
    )
    m.impl = p["impl"]
    return m


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(1, 3))
def test_padding_never_changes_real_outputs_nor_final_states(p, extra):
    """Extra garbage steps past every sequence's end change nothing but zero outputs."""
    m = _module(p)
    N, L = len(p["lengths"]), p["L"]
    x = torch.randn(L, N, p["input_size"], dtype=torch.float64)
    out, final = m(x, lengths=p["lengths"])
    padded = torch.cat([x, 1e3 * torch.randn(extra, N, p["input_size"], dtype=torch.float64)])
    out2, final2 = m(padded, lengths=p["lengths"])
    torch.testing.assert_close(out2[:L], out, **F64)
    assert not out2[L:].any()
    for a, b in zip(state_tensors(final2), state_tensors(final)):
        torch.testing.assert_close(a, b, **F64)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_each_sequence_alone_equals_the_batch(p):
    """Running sequence n alone, cut to its length, gives its slice of the batched result."""
    m = _module(p)
    N, L = len(p["lengths"]), p["L"]
    x = torch.randn(L, N, p["input_size"], dtype=torch.float64)
    out, final = m(x, lengths=p["lengths"])
    for n, length in enumerate(p["lengths"]):
        alone, final_alone = m(x[:length, n : n + 1])
        torch.testing.assert_close(out[:length, n : n + 1], alone, **F64)
        assert not out[length:, n].any()
        for a, b in zip(state_tensors(final), state_tensors(final_alone)):
            torch.testing.assert_close(a[:, n : n + 1], b, **F64)
