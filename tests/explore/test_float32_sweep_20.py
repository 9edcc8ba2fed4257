"""The explorer's live gradient map carried in float32 (issue 20): each row rescaled by a power of
two as it drifts, so that its relative error is float32's whatever its magnitude. Held to the
diagnostics' float64 ``gradient_matrix`` on texts long enough for a sigmoid Elman's gradient to
fall far below float32's range (where an unscaled float32 sweep gives zeros)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.explore.test_sweep_20 import CELLS, language_model, oracle

from rnnkit.analysis import gradient_flow as gf
from rnnkit.explore import sweep
from rnnkit.models.config import ModelConfig, build_tagger

FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)


def close(found: np.ndarray, expected: np.ndarray) -> None:
    """Nonzero exactly where float64 is, within 1e-3 everywhere and 1e-5 for most entries."""
    reached = expected > 0
    assert ((found > 0) == reached).all(), "a zero where float64 has a value (or the reverse)"
    relative = np.abs(found[reached] - expected[reached]) / expected[reached]
    assert relative.max() < 1e-3 and np.median(relative) < 1e-5, (relative.max(), np.median(relative))


@pytest.mark.parametrize("name", list(CELLS))
def test_a_float32_carry_is_float64_to_float32_precision_for_every_cell(name):
    model = language_model(CELLS[name])
    tokens = torch.randint(0, 11, (90, 1), generator=torch.Generator().manual_seed(6))
    recording = sweep.Probe(model, graph=False).record(tokens, gf.lm_loss)
    for index in (0, 1):
        expected = oracle(model, tokens, index, gf.lm_loss)
        close(sweep.gradient_matrix(recording, index, carry=torch.float32), expected)


def test_a_gradient_vanishing_below_float32s_range_keeps_its_value():
    """A sigmoid Elman's gradient falls by ~0.2 a step: over 120 steps to ~1e-70, far under the
    smallest float32 (1.4e-45). Carried unscaled in float32 it would be 0 there."""
    model = language_model(CELLS["elman-sigmoid"], layers=1)
    tokens = torch.randint(0, 11, (120, 1), generator=torch.Generator().manual_seed(1))
    recording = sweep.Probe(model, graph=False).record(tokens, gf.lm_loss)
    expected = oracle(model, tokens, 0, gf.lm_loss)
    assert expected[expected > 0].min() < 1e-20 * FLOAT32_TINY  # the case the rescaling is for
    found = sweep.gradient_matrix(recording, 0, carry=torch.float32)
    close(found, expected)
    assert found.dtype == np.float64  # the values leave as float64: 1e-70 is not flushed on the way


def test_a_deep_bidirectional_tagger_adds_both_directions_from_above_at_their_scales():
    torch.manual_seed(0)
    config = ModelConfig(cell="lstm", embed_size=5, hidden_size=6, num_layers=3, bidirectional=True)
    tagger = build_tagger(config, words=9, chars=1, tags=4).eval()
    words = torch.randint(0, 9, (40, 1), generator=torch.Generator().manual_seed(2))
    recording = sweep.Probe(tagger, graph=False).record(words, gf.tagger_loss())
    for index in range(6):
        expected = oracle(tagger, words, index, gf.tagger_loss())
        close(sweep.gradient_matrix(recording, index, workers=2, carry=torch.float32), expected)


def test_a_row_that_vanishes_to_zero_does_not_swamp_what_enters_it_later():
    """Below the top of a bidirectional ReLU tagger a row's gradient dies (every unit off: exactly
    zero) and comes back with what the layer above sends at an earlier step: what comes back keeps
    its own scale (an exponent left from before the row died would round it to zero)."""
    torch.manual_seed(0)
    config = ModelConfig(
        cell="elman", nonlinearity="relu", embed_size=4, hidden_size=3, num_layers=2, bidirectional=True
    )
    tagger = build_tagger(config, words=9, chars=1, tags=4).eval()
    with torch.no_grad():
        for name, p in tagger.rnn.named_parameters():
            if "bias" in name:
                p.sub_(0.3)  # many units off
    words = torch.randint(0, 9, (40, 1), generator=torch.Generator().manual_seed(4))
    recording = sweep.Probe(tagger, graph=False).record(words, gf.tagger_loss())
    expected = oracle(tagger, words, 0, gf.tagger_loss())
    T = len(expected)
    comes_back = [
        t for t in range(T) for k in range(T) if expected[t, k] == 0 and (expected[t, :k] > 0).any()
    ]
    assert comes_back  # the case this test is for
    close(sweep.gradient_matrix(recording, 0, carry=torch.float32), expected)
    exact = sweep.gradient_matrix(recording, 0, carry=torch.float64)
    np.testing.assert_allclose(exact, expected, rtol=1e-9, atol=1e-300)
