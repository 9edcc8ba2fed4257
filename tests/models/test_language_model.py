"""The language model and its heads: log-probabilities, tying, adaptive softmax, bad options."""

from __future__ import annotations

import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model
from rnnkit.models.heads import AdaptiveSoftmax, FullSoftmax


def test_log_prob_is_the_softmax_of_the_lecture():
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            cell="elman",
            nonlinearity="sigmoid",
            bias=False,
            head_bias=False,
            embed_size=5,
            hidden_size=6,
            num_layers=1,
        ),
        vocab_size=7,
    ).double()
    x = torch.randint(7, (4, 3))
    y = torch.randint(7, (4, 3))
    logp, _ = model.log_prob(x, y)
    h, _ = model(x)
    W_S = model.head.proj.weight
    y_hat = torch.softmax(h @ W_S.T, dim=-1)  # ŷ_t = softmax(W_S h_t)
    torch.testing.assert_close(logp, y_hat.gather(-1, y.unsqueeze(-1)).squeeze(-1).log())


def test_full_log_probs_normalise_and_agree_with_log_prob():
    head = FullSoftmax(4, 9)
    h, t = torch.randn(5, 4), torch.randint(9, (5,))
    full = head.log_probs(h)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(5))
    torch.testing.assert_close(full.gather(1, t[:, None]).squeeze(1), head.log_prob(h, t))


def test_adaptive_softmax_normalises_and_agrees():
    head = AdaptiveSoftmax(32, 50, cutoffs=[10, 30])
    h, t = torch.randn(6, 32), torch.randint(50, (6,))
    full = head.log_probs(h)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(6))
    torch.testing.assert_close(full.gather(1, t[:, None]).squeeze(1), head.log_prob(h, t))


def test_tied_weights_share_one_matrix():
    model = build_model(ModelConfig(embed_size=8, hidden_size=8, tie_weights=True), vocab_size=20)
    assert model.head.proj.weight is model.embedding.weight


def test_init_range():
    model = build_model(ModelConfig(init_range=0.1), vocab_size=30)
    assert all(p.abs().max() <= 0.1 for p in model.parameters())


@pytest.mark.parametrize(
    "config, match",
    [
        (ModelConfig(embed_size=8, hidden_size=16, tie_weights=True), "tie_weights"),
        (ModelConfig(head="adaptive", cutoffs=[10], tie_weights=True), "tie_weights needs"),
        (ModelConfig(head="adaptive", cutoffs=[100]), "cutoffs"),
        (ModelConfig(hidden_size=8, embed_size=8, head="adaptive", cutoffs=[10, 20]), "div_value"),
        (ModelConfig(cell="lstm", nonlinearity="sigmoid"), "does not apply to cell 'lstm'"),
    ],
)
def test_impossible_combinations(config, match):
    with pytest.raises(RnnkitError, match=match):
        build_model(config, vocab_size=50)
