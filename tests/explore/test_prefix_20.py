"""A language model's recording of an edited text reuses the recording of the text before it up to
the first token that changed (issue 20: a one-way model's step t reads positions <= t alone), and
the gradient map sweeps only the rows after it: the same numbers as recording and sweeping the
edited text from scratch, for every cell, for an edit in the middle, words added at the end and
words deleted from it."""

from __future__ import annotations

import numpy as np
import pytest
import tests.explore.test_compute_20 as compute_tests
import torch
from tests.explore.test_sweep_20 import CELLS, language_model

from rnnkit.analysis import gradient_flow as gf
from rnnkit.explore import sweep
from rnnkit.explore.compute import Explorer
from rnnkit.explore.steps import fields

runs = compute_tests.runs  # the fixture: tiny trained runs of every task

BASE = torch.randint(0, 11, (30, 1), generator=torch.Generator().manual_seed(11))


def edited(kind: str) -> tuple[torch.Tensor, int]:
    """``BASE`` edited, and the first position the edited recording runs again."""
    if kind == "middle":  # token 12 changed: E_11 reads it, so positions 11.. run again
        tokens = BASE.clone()
        tokens[12, 0] = (tokens[12, 0] + 1) % 11
        return tokens, 11
    if kind == "appended":  # its last token (a target only) is followed by more
        more = torch.randint(0, 11, (8, 1), generator=torch.Generator().manual_seed(12))
        return torch.cat([BASE, more]), len(BASE) - 1
    tokens = BASE[:22].clone()  # "deleted": the end cut off
    return tokens, 20


def same(found: list, expected: list) -> None:
    for a, b in zip(found, expected, strict=True):
        for x, y in zip(fields(a), fields(b), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman-sigmoid", "irnn", "slstm", "mingru"])
@pytest.mark.parametrize("kind", ["middle", "appended", "deleted"])
def test_an_extended_recording_is_the_recording_from_scratch(name, kind):
    model = language_model(CELLS[name])
    probe = sweep.Probe(model, graph=False)
    base = probe.record(BASE, gf.lm_loss)
    tokens, start = edited(kind)
    found, expected = probe.extend(base, tokens), probe.record(tokens, gf.lm_loss)
    assert found.previous is not None and found.previous[1] == start
    for index in expected.calls:
        for part in range(3):  # each step's input, received state and new state: bit for bit
            same([c[part] for c in found.calls[index]], [c[part] for c in expected.calls[index]])
    torch.testing.assert_close(found.y, expected.y.detach(), rtol=0, atol=0)
    torch.testing.assert_close(found.losses, expected.losses, rtol=1e-12, atol=0)
    torch.testing.assert_close(found.direct, expected.direct, rtol=1e-12, atol=1e-300)
    for index in expected.calls:
        for carry, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            base.gradient_map(index, carry=carry)  # known for the text before the edit ...
            fresh = sweep.gradient_matrix(expected, index, carry=carry)
            np.testing.assert_allclose(found.gradient_map(index, carry=carry), fresh, rtol=rtol, atol=1e-300)


def test_only_the_rows_after_the_edit_are_swept(monkeypatch):
    model = language_model(CELLS["lstm"])
    probe = sweep.Probe(model, graph=False)
    base = probe.record(BASE, gf.lm_loss)
    base.gradient_map(1)
    swept = []
    sweep_once = sweep.gradient_matrix

    def spied(recording, index, workers=1, carry=torch.float64, first=0):
        swept.append(first)
        return sweep_once(recording, index, workers, carry, first)

    monkeypatch.setattr(sweep, "gradient_matrix", spied)
    tokens, start = edited("appended")
    probe.extend(base, tokens).gradient_map(1)
    assert swept == [start]  # 29 of the 37 rows were the text before's
    unknown = probe.extend(base, edited("middle")[0])  # base's map of layer 0 was never made
    unknown.gradient_map(0)
    assert swept[-1] == 0


def test_a_first_token_changed_or_a_bidirectional_model_records_from_scratch():
    model = language_model(CELLS["gru"])
    probe = sweep.Probe(model, graph=False)
    base = probe.record(BASE, gf.lm_loss)
    tokens = BASE.clone()
    tokens[1, 0] = (tokens[1, 0] + 1) % 11
    assert probe.extend(base, tokens).previous is None
    torch.manual_seed(0)
    two_way = sweep.Probe(language_model({"cell": "lstm", "bidirectional": True}), graph=False)
    assert two_way.extend(two_way.record(BASE, gf.lm_loss), BASE).previous is None


def test_the_explorer_extends_the_text_read_before_and_answers_as_from_scratch(runs):
    text = "w1 w2 w3 w4 w5 w6 w7 w8 w1 w2 w3"
    edit = "w1 w2 w3 w4 w5 w6 w7 w2 w1 w2 w3 w4"
    live = Explorer([runs["lstm"]], precision=torch.float32)
    for layer in (0, 1):
        live.gradient(0, text, layer, 0)
    answers = [live.gradient(0, edit, layer, 0) for layer in (0, 1)]
    inside = live.inside(0, edit, 1, 0, "c")
    recording = live.reading(0, edit).recording()
    assert recording.previous is not None and recording.previous[1] == 7  # w8 -> w2 at input 8
    fresh = Explorer([runs["lstm"]], precision=torch.float32)
    for layer, answer in zip((0, 1), answers):
        expected = fresh.gradient(0, edit, layer, 0)
        G, E = (
            np.array([[np.nan if v is None else v for v in row] for row in d["map"]])
            for d in (answer, expected)
        )
        np.testing.assert_allclose(G, E, rtol=1e-5, atol=0, equal_nan=True)
    assert inside == fresh.inside(0, edit, 1, 0, "c")
