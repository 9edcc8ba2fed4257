"""The lecture's RNN language model: x_t = L[w_t], h_t = RNN(x_t, h_{t-1}), ŷ_t = softmax(W_S h_t)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.layers.dropout import drop_rows, dropout
from rnnkit.layers.rnn import RNN
from rnnkit.models.heads import OutputHead


class LanguageModel(nn.Module):
    r"""Embedding, a recurrent stack and an output head.

    .. math::
        x_t = L_{[w_t]},\qquad h_t = \text{RNN}(x_t, h_{t-1}),\qquad
        \hat P(w_{t+1} = v_j \mid w_{\le t}) = \operatorname{softmax}(W^{(S)} h_t)_j

    Args:
        vocab_size: |V|.
        embed_size: size of the word vectors x_t.
        rnn: the recurrent stack (:func:`rnnkit.rnn`), input size ``embed_size``.
        head: the output head, input size the RNN's output size.
        dropout: dropout on the RNN's output (Zaremba et al. 2014; between layers it is
            the RNN's own ``dropout``).
        input_dropout: dropout on the word vectors x_t; ``None`` means ``dropout``.
        embedding_dropout: drop whole words from L, the same words at every position
            (Gal & Ghahramani 2016; AWD-LSTM's ``dropoute``).
        locked_dropout: the input and output dropout masks are shared over time.
        projection_size: if given, a linear map of the RNN's output to this size before
            the head, so a wide RNN can share a narrow embedding matrix with the head.

    ``forward(tokens, state)`` takes ids (L, N) and returns the features (L, N, H) fed
    to the head and the final state; :meth:`log_prob` scores targets.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        rnn: RNN,
        head: OutputHead,
        dropout: float = 0.0,
        input_dropout: float | None = None,
        embedding_dropout: float = 0.0,
        locked_dropout: bool = False,
        projection_size: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn
        out = rnn.hidden_size * rnn.num_directions
        self.projection = None if projection_size is None else nn.Linear(out, projection_size, bias=False)
        self.head = head
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout
        self.embedding_dropout, self.locked_dropout = embedding_dropout, locked_dropout

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        weight = drop_rows(self.embedding.weight, self.embedding_dropout, self.training)
        x = dropout(F.embedding(tokens, weight), self.input_dropout, self.training, self.locked_dropout)
        h, state = self.rnn(x, state)
        h = dropout(h, self.dropout, self.training, self.locked_dropout)
        return (h if self.projection is None else self.projection(h)), state

    def log_prob(self, tokens: Tensor, targets: Tensor, state=None) -> tuple[Tensor, object]:
        """log P(targets[t, n] | tokens[≤t, n]) of shape (L, N), and the final state."""
        h, state = self(tokens, state)
        return self.head.log_prob(h.flatten(0, 1), targets.flatten()).view_as(targets), state
