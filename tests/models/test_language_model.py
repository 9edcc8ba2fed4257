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


def test_div_value_sizes_the_tail_projections():
    model = build_model(ModelConfig(hidden_size=32, head="adaptive", cutoffs=[10, 30], div_value=2), 50)
    tails = [cluster[0].out_features for cluster in model.head.asm.tail]
    assert tails == [16, 8]  # 32 // 2, 32 // 4


@pytest.mark.parametrize("bias", [True, False])
def test_head_bias_applies_to_the_adaptive_head(bias):
    config = ModelConfig(hidden_size=32, head="adaptive", cutoffs=[10, 30], head_bias=bias)
    head = build_model(config, 50).head.asm.head
    assert (head.bias is not None) == bias and head.out_features == 10 + 2


def test_tied_weights_share_one_matrix():
    model = build_model(ModelConfig(embed_size=8, hidden_size=8, tie_weights=True), vocab_size=20)
    assert model.head.proj.weight is model.embedding.weight


def test_tied_weights_through_a_projection():
    config = ModelConfig(embed_size=8, hidden_size=24, num_layers=2, tie_weights=True, projection_size=8)
    model = build_model(config, vocab_size=20)
    assert model.head.proj.weight is model.embedding.weight
    logp, _ = model.log_prob(torch.randint(20, (5, 3)), torch.randint(20, (5, 3)))
    assert logp.shape == (5, 3) and bool((logp < 0).all())


def test_awd_regularisers_reach_the_model_and_only_act_in_training():
    config = ModelConfig(
        embed_size=6,
        hidden_size=6,
        dropout=0.4,
        input_dropout=0.5,
        layer_dropout=0.2,
        embedding_dropout=0.5,
        weight_drop=0.3,
        locked_dropout=True,
    )
    model = build_model(config, vocab_size=40)
    assert (model.input_dropout, model.embedding_dropout, model.locked_dropout) == (0.5, 0.5, True)
    assert (model.rnn.dropout, model.rnn.weight_drop, model.rnn.locked_dropout) == (0.2, 0.3, True)
    # Embedding dropout removes a word everywhere it occurs: the RNN sees one repeated word
    # as all zeros or as L[w] / (1 - p) at every position, never a mixture.
    model.input_dropout = 0.0
    inputs = []
    model.rnn.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach()))
    dropped = set()
    for seed in range(20):
        torch.manual_seed(seed)
        model(torch.full((5, 1), 7))
        x = inputs[-1][:, 0]
        dropped.add(bool((x == 0).all()))
        kept = model.embedding.weight[7].detach().expand_as(x) / 0.5
        assert bool((x == 0).all()) or torch.allclose(x, kept)
    assert dropped == {True, False}
    model.eval()
    tokens = torch.randint(40, (5, 2))
    torch.testing.assert_close(model(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_init_range():
    model = build_model(ModelConfig(init_range=0.1), vocab_size=30)
    assert all(p.abs().max() <= 0.1 for p in model.parameters())
    model = build_model(ModelConfig(embed_init_range=0.01, hidden_size=400), vocab_size=300)
    assert model.embedding.weight.abs().max() <= 0.01
    assert model.rnn.weight_hh_l0.abs().max() > 0.01  # the rest keeps torch's U(-1/sqrt(H), 1/sqrt(H))


@pytest.mark.parametrize(
    "config, match",
    [
        (ModelConfig(embed_size=8, hidden_size=16, tie_weights=True), "tie_weights"),
        (ModelConfig(head="adaptive", cutoffs=[10], tie_weights=True), "tie_weights needs"),
        (ModelConfig(head="adaptive", cutoffs=[100]), "cutoffs"),
        (ModelConfig(hidden_size=8, embed_size=8, head="adaptive", cutoffs=[10, 20]), "div_value"),
        (ModelConfig(head="adaptive", cutoffs=[10], div_value=0.5), "model.div_value must be at least 1"),
        (ModelConfig(cell="lstm", nonlinearity="sigmoid"), "does not apply to cell 'lstm'"),
        (ModelConfig(embedding_dropout=1.0), "model.embedding_dropout must be a probability"),
        (ModelConfig(input_dropout=-0.5), "model.input_dropout must be a probability"),
        (ModelConfig(weight_drop=1.5), "model.weight_drop must be a probability"),
        (ModelConfig(projection_size=0), "model.projection_size must be a positive"),
    ],
)
def test_impossible_combinations(config, match):
    with pytest.raises(RnnkitError, match=match):
        build_model(config, vocab_size=50)
