"""The tagger: padding never leaks (bidirectional, characters, CRF), likelihoods and decoding."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.models.tagger import CharFeature, Tagger


def make(crf: bool, chars: bool, seed: int = 0) -> Tagger:
    torch.manual_seed(seed)
    char = CharFeature(12, 4, rnnkit.rnn("lstm", 4, 3, bidirectional=True)) if chars else None
    encoder = rnnkit.rnn("lstm", 6 + (6 if chars else 0), 5, num_layers=2, bidirectional=True)
    return Tagger(20, 6, encoder, 4, chars=char, crf=crf).double().eval()


def char_batch(words: torch.Tensor, lengths: torch.Tensor, seed: int = 0):
    """Characters for each (position, sentence): word id w spelled as w % 5 + 1 chars."""
    L, N = words.shape
    index = torch.arange(L * N).view(L, N)
    spelled = [(int(w) % 5) + 1 for w in words.flatten()]
    C = max(spelled)
    ids = torch.zeros(C, L * N, dtype=torch.long)
    for j, (w, n) in enumerate(zip(words.flatten().tolist(), spelled)):
        ids[:n, j] = torch.tensor([(w + k) % 11 + 1 for k in range(n)])
    return ids, torch.tensor(spelled), index


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
@pytest.mark.parametrize("chars", [False, True], ids=["words", "chars"])
def test_a_sentence_scores_the_same_alone_or_padded_in_a_batch(crf, chars):
    model = make(crf, chars)
    g = torch.Generator().manual_seed(1)
    words = torch.randint(1, 20, (7, 3), generator=g)
    lengths = torch.tensor([7, 4, 2])
    tags = torch.randint(4, (7, 3), generator=g)
    words_padded = words.clone()
    words_padded[torch.arange(7)[:, None] >= lengths[None, :]] = 0
    args = (char_batch(words_padded, lengths),) if chars else ()
    scores = model(words_padded, lengths, *args)
    ll = model.log_likelihood(scores, tags, lengths)
    paths = model.decode(scores, lengths)
    for n in range(3):
        k = int(lengths[n])
        alone_words = words[:k, n : n + 1]
        alone_args = (char_batch(alone_words, lengths[n : n + 1]),) if chars else ()
        alone = model(alone_words, lengths[n : n + 1], *alone_args)
        torch.testing.assert_close(scores[:k, n], alone[:, 0], rtol=1e-12, atol=1e-12)
        alone_ll = model.log_likelihood(alone, tags[:k, n : n + 1], lengths[n : n + 1])
        torch.testing.assert_close(ll[n], alone_ll[0], rtol=1e-12, atol=1e-12)
        assert paths[n] == model.decode(alone, lengths[n : n + 1])[0] and len(paths[n]) == k


def test_softmax_likelihood_is_the_sum_of_token_log_probabilities():
    model = make(crf=False, chars=False)
    words = torch.randint(1, 20, (5, 2))
    lengths = torch.tensor([5, 3])
    tags = torch.randint(4, (5, 2))
    scores = model(words, lengths)
    ll = model.log_likelihood(scores, tags, lengths)
    expected = sum(torch.log_softmax(scores[t, 1], -1)[tags[t, 1]] for t in range(3))
    torch.testing.assert_close(ll[1], expected)
    assert model.decode(scores, lengths)[0] == scores[:, 0].argmax(-1).tolist()


def test_embedding_dropout_drops_word_vectors_but_keeps_the_characters():
    torch.manual_seed(4)
    char = CharFeature(12, 4, rnnkit.rnn("lstm", 4, 3, bidirectional=True))
    encoder = rnnkit.rnn("lstm", 12, 5, bidirectional=True)
    model = Tagger(20, 6, encoder, 4, chars=char, input_dropout=0.0, embedding_dropout=0.5).train()
    words, lengths = torch.randint(1, 6, (25, 3)), torch.full((3,), 25)
    chars = char_batch(words, lengths)
    seen = []
    handle = model.rnn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    model(words, lengths, chars)
    handle.remove()
    word_part, char_part = seen[0][..., :6], seen[0][..., 6:]
    kept = word_part.abs().sum(-1) > 0
    torch.testing.assert_close(word_part[kept], model.embedding.weight.detach()[words][kept] / 0.5)
    for w in words.unique():
        fate = kept[words == w]
        assert fate.all() or not fate.any(), f"word {int(w)} dropped at some positions only"
    assert 0 < kept.float().mean() < 1
    assert (char_part.abs().sum(-1) > 0).all()
