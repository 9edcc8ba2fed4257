r"""The lecture's sentence classifier: a (deep) bidirectional RNN read into one vector.

.. math::
    h_t = [\overrightarrow{h}_t; \overleftarrow{h}_t],\qquad
    s = \text{pool}(h_1, \dots, h_n),\qquad \hat y = \operatorname{softmax}(W^{(S)} s)

with ``pooling`` one of ``final`` (the last forward state and the first backward state:
each direction's summary of the whole sentence), ``max`` (per unit over time) or ``mean``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import names
from rnnkit.errors import RnnkitError
from rnnkit.layers.dropout import drop_rows, dropout
from rnnkit.layers.rnn import RNN
from rnnkit.layers.state import step_mask
from rnnkit.models.heads import at_least_fp32

POOLINGS = names.POOLINGS


class Classifier(nn.Module):
    """Embeddings -> RNN encoder -> pooling -> dropout -> class scores.

    Args:
        vocab_size: word vocabulary size (id 0 is padding).
        embed_size: word vector size.
        rnn: the encoder.
        num_classes: number of classes.
        pooling: ``final``, ``max`` or ``mean``.
        dropout: on the pooled vector, and on the word vectors unless ``input_dropout``.
        input_dropout: on the word vectors.
        embedding_dropout: drop whole words from the embedding matrix (the same words at
            every position).

    ``forward(words (L, N), lengths (N,))`` returns class log-probabilities (N, C).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        rnn: RNN,
        num_classes: int,
        pooling: str = "final",
        dropout: float = 0.0,
        input_dropout: float | None = None,
        embedding_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise RnnkitError(f"model.pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.rnn = rnn
        self.proj = nn.Linear(rnn.hidden_size * rnn.num_directions, num_classes)
        self.pooling, self.dropout = pooling, dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout
        self.embedding_dropout = embedding_dropout

    def forward(self, words: Tensor, lengths: Tensor) -> Tensor:
        weight = drop_rows(self.embedding.weight, self.embedding_dropout, self.training)
        x = dropout(F.embedding(words, weight, 0), self.input_dropout, self.training)
        h, final = self.rnn(x, lengths=lengths)
        if self.pooling == "final":
            top = (final[0] if isinstance(final, tuple) else final)[-self.rnn.num_directions :]
            pooled = torch.cat(list(top), dim=-1)  # forward's last real step; backward's first
        else:
            mask = step_mask(lengths, words.shape[0])  # (L, N, 1)
            if self.pooling == "max":
                pooled = h.masked_fill(~mask, float("-inf")).max(0).values
            else:
                pooled = (h * mask).sum(0) / lengths.unsqueeze(-1).to(h.dtype)
        return F.log_softmax(at_least_fp32(self.proj(dropout(pooled, self.dropout, self.training))), dim=-1)
