"""The sentence classifier: every pooling sees only real words, alone or padded in a batch."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.errors import RnnkitError
from rnnkit.models.classifier import Classifier


@pytest.mark.parametrize("pooling", ["final", "max", "mean"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_sentence_scores_the_same_alone_or_padded(pooling, cell):
    torch.manual_seed(0)
    encoder = rnnkit.rnn(cell, 6, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    model = Classifier(30, 6, encoder, 3, pooling).double().eval()
    words = torch.randint(1, 30, (8, 3))
    lengths = torch.tensor([8, 5, 1])
    words[torch.arange(8)[:, None] >= lengths[None, :]] = 0
    batch = model(words, lengths)
    for n in range(3):
        k = int(lengths[n])
        alone = model(words[:k, n : n + 1], lengths[n : n + 1])
        torch.testing.assert_close(batch[n], alone[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batch.exp().sum(-1), torch.ones(3, dtype=torch.float64))


def test_mean_pooling_is_the_mean_of_the_real_steps():
    torch.manual_seed(1)
    encoder = rnnkit.rnn("gru", 4, 3, bidirectional=True, dtype=torch.float64)
    model = Classifier(10, 4, encoder, 2, "mean").double().eval()
    words, lengths = torch.tensor([[1], [2], [3]]), torch.tensor([3])
    h, _ = encoder(model.embedding(words), lengths=lengths)
    expected = torch.log_softmax(model.proj(h.mean(0)), -1)
    torch.testing.assert_close(model(words, lengths), expected)


def test_unknown_pooling_is_refused():
    with pytest.raises(RnnkitError, match="pooling must be one of"):
        Classifier(10, 4, rnnkit.rnn("gru", 4, 3), 2, "median")


def _encoder_inputs(model, words, lengths):
    """What the model hands its RNN encoder (captured by a forward pre-hook)."""
    seen = []
    handle = model.rnn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model(words, lengths)
    handle.remove()
    return seen[0]


def test_embedding_dropout_drops_whole_words_the_same_at_every_position():
    torch.manual_seed(2)
    encoder = rnnkit.rnn("lstm", 4, 3, bidirectional=True)
    model = Classifier(40, 4, encoder, 2, "max", dropout=0.3, input_dropout=0.0, embedding_dropout=0.5)
    words = torch.randint(1, 8, (30, 4))  # few word types, so each repeats
    lengths = torch.full((4,), 30)
    x = _encoder_inputs(model.train(), words, lengths)
    vectors = model.embedding.weight.detach()[words] / 0.5
    kept = x.abs().sum(-1) > 0
    torch.testing.assert_close(x[kept], vectors[kept])
    for w in words.unique():
        fate = kept[words == w]
        assert fate.all() or not fate.any(), f"word {int(w)} dropped at some positions only"
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(_encoder_inputs(model.eval(), words, lengths), vectors * 0.5)


def test_input_dropout_apart_from_the_output_dropout():
    torch.manual_seed(3)
    encoder = rnnkit.rnn("gru", 4, 3)
    model = Classifier(20, 4, encoder, 2, "mean", dropout=0.9, input_dropout=0.0).train()
    words, lengths = torch.randint(1, 20, (6, 2)), torch.tensor([6, 6])
    torch.testing.assert_close(_encoder_inputs(model, words, lengths), model.embedding.weight.detach()[words])
