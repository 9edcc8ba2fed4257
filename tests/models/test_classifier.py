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
