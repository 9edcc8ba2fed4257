"""The explorer's gradient map in one backward sweep (issue 20) against the diagnostics' own
``gradient_matrix`` (one autograd pass per loss E_t), for every cell the toolkit builds and the
autograd fallback, on small float64 models: language models and a deep bidirectional tagger."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rnnkit.analysis import gradient_flow as gf
from rnnkit.explore import steps, sweep
from rnnkit.models.config import ModelConfig, build_model, build_tagger

CELLS = {
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
    "elman-sigmoid": {"cell": "elman", "nonlinearity": "sigmoid"},
    "elman-tanh": {"cell": "elman", "nonlinearity": "tanh"},
    "elman-relu": {"cell": "elman", "nonlinearity": "relu"},
    "irnn": {"cell": "irnn"},
    "lnlstm": {"cell": "lnlstm"},
    "mingru": {"cell": "mingru"},
    "minlstm": {"cell": "minlstm"},
    "slstm": {"cell": "slstm"},
}


def language_model(options: dict, layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(embed_size=5, hidden_size=6, num_layers=layers, init_range=0.6, **options)
    return build_model(config, 11).eval()


def oracle(model: torch.nn.Module, tokens: torch.Tensor, index: int, loss: gf.Loss) -> np.ndarray:
    return gf.gradient_matrix(gf.trace(model, tokens, index, loss))


def swept(model: torch.nn.Module, tokens: torch.Tensor, index: int, loss: gf.Loss, graph=False) -> np.ndarray:
    """The explorer's map (its probes of per-step losses keep no graph of the recurrent layers)."""
    return sweep.gradient_matrix(sweep.Probe(model, graph=graph).record(tokens, loss), index)


@pytest.mark.parametrize("name", list(CELLS))
def test_the_sweep_is_one_autograd_pass_per_loss_for_every_cell(name):
    model = language_model(CELLS[name])
    tokens = torch.randint(0, 11, (12, 1), generator=torch.Generator().manual_seed(1))
    for index in (0, 1):
        expected, found = oracle(model, tokens, index, gf.lm_loss), swept(model, tokens, index, gf.lm_loss)
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-300)
        assert np.count_nonzero(found) > 0.4 * found.size  # far from a map of zeros


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_deep_bidirectional_tagger_reaches_both_ways(cell):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embed_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    tagger = build_tagger(config, words=9, chars=1, tags=4).eval()
    words = torch.randint(0, 9, (7, 1), generator=torch.Generator().manual_seed(2))
    loss = gf.tagger_loss()
    for index in range(4):
        expected = oracle(tagger, words, index, loss)
        for graph in (False, True):
            found = swept(tagger, words, index, loss, graph)
            np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-300)
    assert (swept(tagger, words, 0, loss) > 0).all()  # below the top, every E_t reaches every h_k


@pytest.mark.parametrize("name", ["lstm", "gru-reset-before"])
def test_a_cell_of_another_kind_is_differentiated_by_autograd(name, monkeypatch):
    model = language_model(CELLS[name])
    tokens = torch.randint(0, 11, (9, 1), generator=torch.Generator().manual_seed(3))
    written = swept(model, tokens, 0, gf.lm_loss)
    monkeypatch.setattr(steps, "STEPS", {})
    probe = sweep.Probe(model, graph=False)
    recording = probe.record(tokens, gf.lm_loss)
    assert isinstance(steps.steps(probe.cell(0), recording.calls[0]), steps.AutogradSteps)
    found = sweep.gradient_matrix(recording, 0)
    np.testing.assert_allclose(found, oracle(model, tokens, 0, gf.lm_loss), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(found, written, rtol=1e-9, atol=1e-300)


def test_one_recording_is_the_diagnostics_trace_of_every_layer_direction():
    torch.manual_seed(0)
    config = ModelConfig(cell="lstm", embed_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    tagger = build_tagger(config, words=9, chars=1, tags=4).eval()
    words = torch.randint(0, 9, (6, 1), generator=torch.Generator().manual_seed(4))
    recordings = [sweep.Probe(tagger, graph=graph).record(words, gf.tagger_loss()) for graph in (False, True)]
    for index, recording in ((i, r) for i in range(4) for r in recordings):
        expected, found = gf.trace(tagger, words, index, gf.tagger_loss()), recording.trace(index)
        assert found.reverse == expected.reverse and found.loss_steps == expected.loss_steps
        for a, b in zip(found.states, expected.states):
            torch.testing.assert_close(a.h, b.h, rtol=0, atol=0)
            torch.testing.assert_close(a.c, b.c, rtol=0, atol=0)
        for a, b in zip(found.inputs, expected.inputs):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("workers", [2, 3])
def test_rows_swept_by_several_threads_are_the_same_map(workers, monkeypatch):
    """The rows split into spans of about equal work, each swept by its own thread, in groups small
    enough for the memory bound too: the map of one sweep, for every layer-direction."""
    torch.manual_seed(0)
    config = ModelConfig(cell="lstm", embed_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    tagger = build_tagger(config, words=9, chars=1, tags=4).eval()
    words = torch.randint(0, 9, (11, 1), generator=torch.Generator().manual_seed(5))
    recording = sweep.Probe(tagger, graph=False).record(words, gf.tagger_loss())
    alone = [sweep.gradient_matrix(recording, index) for index in range(4)]
    monkeypatch.setattr(sweep, "ROW_BYTES", 3 * 11 * 12 * 8)  # 3 rows at once: several groups per span
    for index in range(4):
        found = sweep.gradient_matrix(recording, index, workers=workers)
        np.testing.assert_allclose(found, alone[index], rtol=1e-12, atol=1e-300)
        expected = oracle(tagger, words, index, gf.tagger_loss())
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-300)


def test_the_row_spans_cover_every_row_once_with_about_equal_work():
    work = np.arange(1, 101)  # a forward direction's rows: E_t carried from t back to 0
    spans = sweep._balanced(work, 2)
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    shares = [work[a:b].sum() / work.sum() for a, b in spans]
    assert len(spans) == 2 and max(shares) < 0.52
    assert sweep._balanced(np.ones(3), 8) == [(0, 1), (1, 2), (2, 3)]
