"""ONNX export (issue 19, item 2): ONNX Runtime computes what the PyTorch model computes.

Tiny models of every cell, one and two directions, 1 to 3 layers, built as a run builds them,
on random batches of random lengths: outputs and returned states within 1e-4 absolute in
float32. The oracle is the model on rnnkit's reference path (the lecture's equations, a
Python loop over the cells).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from conftest import CELL_CASES
from rnnkit.config import ModelConfig
from rnnkit.export import OPSET, read_metadata, to_onnx
from rnnkit.export.graph import NATIVE
from rnnkit.models.config import build_classifier, build_model, build_tagger

ort = pytest.importorskip("onnxruntime")

ATOL = 1e-4
VOCAB, EMBED, HIDDEN = 30, 8, 8
GRID = list(itertools.product(CELL_CASES, [False, True], [1, 2, 3]))
GRID_IDS = [f"{case[0]}-{'bi' if bi else 'uni'}-{layers}" for case, bi, layers in GRID]


def session(model: torch.nn.Module):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(
        to_onnx(model).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def reference(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode on the reference path, its weights made less tame than at init."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.rnn.impl = "reference"
    return model.eval()


def config(case, bidirectional: bool, layers: int, **kw) -> ModelConfig:
    _, cell, options, _ = case
    return ModelConfig(
        cell=cell,
        embed_size=EMBED,
        hidden_size=HIDDEN,
        num_layers=layers,
        bidirectional=bidirectional,
        **options,
        **kw,
    )


def padded_batch(g: torch.Generator, L: int, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random word ids (L, N), padded with 0 after random lengths in [1, L] (one of them L)."""
    lengths = torch.randint(1, L + 1, (N,), generator=g)
    lengths[int(torch.randint(N, (), generator=g))] = L
    words = torch.randint(1, VOCAB, (L, N), generator=g)
    words[torch.arange(L)[:, None] >= lengths[None, :]] = 0
    return words, lengths


def state_feeds(state: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return dict(zip(("h0", "c0"), (s.numpy() for s in state)))


def random_state(g: torch.Generator, rnn, N: int) -> tuple[torch.Tensor, ...]:
    shape = (rnn.num_layers * rnn.num_directions, N, rnn.hidden_size)
    return tuple(0.5 * torch.randn(shape, generator=g) for _ in range(1 + rnn.cell.has_cell_state))


def as_state(state: tuple[torch.Tensor, ...]):
    return state if len(state) == 2 else state[0]


def tensors(final) -> list[torch.Tensor]:
    return list(final) if isinstance(final, tuple) else [final]


def gap(onnx_values, torch_values, mask: np.ndarray | None = None) -> float:
    """The largest absolute difference over pairs of arrays (over ``mask``'s entries for the first)."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(onnx_values, torch_values, strict=True)):
        b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
        assert a.shape == b.shape
        d = np.abs(a - b)
        worst = max(worst, float((d[mask] if i == 0 and mask is not None else d).max()))
    return worst


@pytest.mark.parametrize(("case", "bidirectional", "layers"), GRID, ids=GRID_IDS)
def test_a_language_model_and_a_classifier_of_every_cell_match_in_onnx_runtime(case, bidirectional, layers):
    g = torch.Generator().manual_seed(layers + 10 * bidirectional)
    torch.manual_seed(0)
    lm = reference(build_model(config(case, bidirectional, layers), VOCAB))
    run = session(lm)
    # the language model: every next-token distribution and the final state, from a random state
    tokens = torch.randint(VOCAB, (7, 4), generator=g)
    state = random_state(g, lm.rnn, 4)
    out = run.run(None, {"tokens": tokens.numpy(), **state_feeds(state)})
    with torch.no_grad():
        h, final = lm(tokens, as_state(state))
        log_probs = lm.head.log_probs(h)
    assert gap(out, [log_probs, *tensors(final)]) < ATOL
    if not bidirectional:  # streamed in two pieces, each call's state fed to the next: as one call
        first = run.run(None, {"tokens": tokens[:3].numpy(), **state_feeds(state)})
        second = run.run(None, {"tokens": tokens[3:].numpy(), **dict(zip(("h0", "c0"), first[1:]))})
        assert gap([np.concatenate([first[0], second[0]]), *second[1:]], out) < ATOL

    # a classifier reading a padded batch of random lengths (the recurrence with sequence_lens)
    torch.manual_seed(0)
    classifier = reference(build_classifier(config(case, bidirectional, layers), VOCAB, 3))
    run = session(classifier)
    words, lengths = padded_batch(g, 9, 5)
    shape = (classifier.rnn.num_layers * classifier.rnn.num_directions, 1, HIDDEN)  # one for all N
    zeros = tuple(torch.zeros(shape) for _ in range(1 + classifier.rnn.cell.has_cell_state))
    out = run.run(None, {"words": words.numpy(), "lengths": lengths.numpy(), **state_feeds(zeros)})
    with torch.no_grad():
        _, final = classifier.rnn(classifier.embedding(words), lengths=lengths)
        expected = [classifier(words, lengths), *tensors(final)]
    assert gap(out, expected) < ATOL
    state = random_state(g, classifier.rnn, 5)
    out = run.run(None, {"words": words.numpy(), "lengths": lengths.numpy(), **state_feeds(state)})
    with torch.no_grad():
        _, final = classifier.rnn(classifier.embedding(words), as_state(state), lengths)
    assert gap(out[1:], tensors(final)) < ATOL


def tagger_feeds(g: torch.Generator, model, L: int, N: int) -> tuple[dict, tuple]:
    words, lengths = padded_batch(g, L, N)
    feeds = {"words": words.numpy(), "lengths": lengths.numpy()}
    chars = None
    if model.chars is not None:  # W distinct words of up to C characters, and where each one sits
        W, C = 6, 5
        char_lengths = torch.randint(1, C + 1, (W,), generator=g)
        char_ids = torch.randint(1, 20, (C, W), generator=g)
        char_ids[torch.arange(C)[:, None] >= char_lengths[None, :]] = 0
        chars = (char_ids, char_lengths, torch.randint(W, (L, N), generator=g))
        feeds.update(chars=char_ids.numpy(), char_lengths=char_lengths.numpy(), word_index=chars[2].numpy())
    shape = (model.rnn.num_layers * model.rnn.num_directions, 1, model.rnn.hidden_size)
    feeds.update(h0=np.zeros(shape, np.float32), c0=np.zeros(shape, np.float32))
    if not model.rnn.cell.has_cell_state:
        del feeds["c0"]
    return feeds, (words, lengths, chars)


@pytest.mark.parametrize(
    ("cell", "crf", "char_embed"),
    [("lstm", False, 0), ("gru", True, 0), ("lstm", True, 6), ("elman", False, 6)],
)
def test_a_tagger_gives_the_scores_and_the_tags_of_the_pytorch_model(cell, crf, char_embed):
    torch.manual_seed(0)
    case = next(c for c in CELL_CASES if c[1] == cell)
    tagger = reference(
        build_tagger(config(case, True, 2, crf=crf, char_embed=char_embed, char_hidden=5), 30, 20, 7)
    )
    if tagger.chars is not None:
        tagger.chars.rnn.impl = "reference"
    run = session(tagger)
    g = torch.Generator().manual_seed(3)
    for L in (1, 2, 9):  # one word: no transition at all for the CRF's loops
        feeds, (words, lengths, chars) = tagger_feeds(g, tagger, L, 6)
        scores, tags, *_ = run.run(None, feeds)
        with torch.no_grad():
            expected = tagger(words, lengths, chars)
        real = (torch.arange(L)[:, None] < lengths[None, :]).numpy()
        assert gap([scores], [expected], real) < ATOL
        assert [tags[: int(n), i].tolist() for i, n in enumerate(lengths)] == tagger.decode(expected, lengths)
        assert (tags[~real] == -1).all()


@pytest.mark.parametrize(
    "options",
    [
        {"head": "adaptive", "cutoffs": [10, 20], "div_value": 2.0},
        {"projection_size": 8, "tie_weights": True, "hidden_size": 12},
        {"bias": False, "head_bias": False},
        {"learn_initial_state": True},
    ],
    ids=["adaptive-softmax", "projection-tied", "no-biases", "learned-initial-state"],
)
def test_a_language_model_head_and_initial_state_match(options):
    torch.manual_seed(0)
    case = next(c for c in CELL_CASES if c[1] == "lstm")
    base = config(case, False, 2)
    lm = reference(build_model(dataclasses.replace(base, **options), VOCAB))
    model = to_onnx(lm)
    state = read_metadata(model)["state"]  # what to feed for a fresh text: zeros, or the learned state
    feeds = {
        name: np.array(state[name], np.float32) if name in state else np.zeros(state["shape"], np.float32)
        for name in state["names"]
    }
    assert state["initial"] == ("learned" if options.get("learn_initial_state") else "zeros")
    tokens = torch.randint(VOCAB, (6, 3))
    out = session(lm).run(None, {"tokens": tokens.numpy(), **feeds})
    with torch.no_grad():
        h, final = lm(tokens)
        log_probs = lm.head.log_probs(h.flatten(0, 1)).view(6, 3, VOCAB)
    assert gap(out, [log_probs, *tensors(final)]) < ATOL
    assert np.allclose(np.exp(out[0]).sum(-1), 1.0, atol=1e-5)


def test_every_cell_runs_as_an_onnx_operator_and_the_file_says_so():
    torch.manual_seed(0)
    model = to_onnx(
        build_model(ModelConfig(cell="gru", reset_after=False, embed_size=4, hidden_size=4, num_layers=1), 10)
    )
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET]
    ops = {n.op_type for n in model.graph.node}
    assert "GRU" in ops and not ops & {"Loop", "Scan"}
    info = read_metadata(model)
    assert info["format"] == 1 and info["task"] == "lm"
    assert info["recurrences"]["rnn"].endswith(
        "ONNX's own GRU operator (linear_before_reset=0), fused; not a loop"
    )
    assert info["inputs"] == {"tokens": ["seq", "batch"], "h0": [1, "state_batch", 4]}
    assert {cls.__name__ for cls in NATIVE} == {"ElmanCell", "GRUCell", "LSTMCell"}
