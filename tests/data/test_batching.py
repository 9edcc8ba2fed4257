"""Truncated-BPTT streams: columns and windows cover every token exactly as documented."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data.batching import batchify, bptt_windows, num_windows
from rnnkit.errors import RnnkitError


def test_batchify_columns_are_contiguous_stretches():
    cols = batchify(torch.arange(13), 3)
    assert cols.tolist() == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 200), st.integers(1, 7), st.integers(1, 12), st.booleans(), st.integers(0, 999))
def test_windows_predict_every_token_but_the_first_once(n, batch, bptt, variable, seed):
    stream = torch.arange(n)
    if n // batch < 2:
        with pytest.raises(RnnkitError):
            batchify(stream, batch)
        return
    cols = batchify(stream, batch)
    gen = torch.Generator().manual_seed(seed)
    targets, last = [], 0
    for pos, x, y in bptt_windows(cols, bptt, variable=variable, generator=gen):
        assert pos == last and x.shape == y.shape and x.shape[0] >= 1
        assert torch.equal(y[:-1], x[1:])  # targets are the inputs shifted by one
        targets.append(y)
        last = pos + x.shape[0]
    assert torch.equal(torch.cat(targets), cols[1:])
    if not variable:
        assert len(targets) == num_windows(cols.shape[0], bptt)


def test_resume_at_a_window_boundary():
    cols = batchify(torch.arange(100), 4)
    windows = list(bptt_windows(cols, 6))
    resumed = list(bptt_windows(cols, 6, start=windows[2][0]))
    assert [w[0] for w in resumed] == [w[0] for w in windows[2:]]


def test_variable_lengths_follow_awd_lstm():
    cols = batchify(torch.arange(200_000), 1)
    gen = torch.Generator().manual_seed(0)
    lengths = [x.shape[0] for _, x, _ in bptt_windows(cols, 70, variable=True, generator=gen)][:-1]
    assert min(lengths) >= 5
    mean = sum(lengths) / len(lengths)
    assert 66 < mean < 70  # 0.95 * 70 + 0.05 * 35 = 68.25


def test_bad_arguments():
    with pytest.raises(RnnkitError, match="batch_size"):
        batchify(torch.arange(10), 0)
    with pytest.raises(RnnkitError, match="bptt"):
        next(bptt_windows(batchify(torch.arange(10), 1), 0))
