"""``model.init = "recipe"`` (issue 23): the same seed gives the PyTorch word-language-model
example's very model, so a side-by-side comparison with it is one flag.

The oracle is that example's model written here from its description (an embedding, a torch
LSTM, a linear decoder; word vectors and decoder weights ~ U(-0.1, 0.1), decoder bias 0).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model

V, E, H, LAYERS = 50, 12, 16, 2


class ExampleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, LAYERS)
        self.decoder = nn.Linear(H, V)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encoder(x))
        return F.cross_entropy(self.decoder(out).flatten(0, 1), y.flatten())


def ours(init: str, seed: int = 3, **options):
    config = dataclasses.replace(
        ModelConfig(), cell="lstm", embed_size=E, hidden_size=H, num_layers=LAYERS, init=init, **options
    )
    torch.manual_seed(seed)
    return build_model(config, V)


def example(seed: int = 3) -> ExampleModel:
    torch.manual_seed(seed)
    return ExampleModel()


def test_the_recipe_is_the_examples_model_and_first_batch_loss():
    model, oracle = ours("recipe"), example()
    theirs = dict(oracle.rnn.named_parameters())
    for name, p in model.rnn.named_parameters():
        assert torch.equal(p, theirs[name]), name
    assert torch.equal(model.embedding.weight, oracle.encoder.weight)
    assert torch.equal(model.head.proj.weight, oracle.decoder.weight)
    assert torch.equal(model.head.proj.bias, torch.zeros(V))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(V, (35, 4), generator=g), torch.randint(V, (35, 4), generator=g)
    model.eval()
    got = -model.log_prob(x, y)[0].mean()
    torch.testing.assert_close(got, oracle.loss(x, y), rtol=1e-6, atol=1e-6)


def test_the_default_is_torchs_and_differs_from_the_recipe():
    default, oracle = ours("torch"), example()
    assert default.embedding.weight.abs().max() > 0.5  # N(0, 1) word vectors
    assert not torch.equal(default.head.proj.weight, oracle.decoder.weight)


def test_the_recipe_needs_the_examples_head():
    with pytest.raises(RnnkitError, match=r"model\.init = 'recipe'"):
        ours("recipe", head="adaptive", cutoffs=[10, 30])
