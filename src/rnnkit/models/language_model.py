"""The lecture's RNN language model: x_t = L[w_t], h_t = RNN(x_t, h_{t-1}), ŷ_t = softmax(W_S h_t)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

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
        dropout: dropout on the word vectors and on the RNN's output (Zaremba et al.
            2014; between layers it is the RNN's own ``dropout``).

    ``forward(tokens, state)`` takes ids (L, N) and returns the features (L, N, H) fed
    to the head and the final state; :meth:`log_prob` scores targets.
    """

    def __init__(
        self, vocab_size: int, embed_size: int, rnn: RNN, head: OutputHead, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn
        self.head = head
        self.dropout = dropout

    def forward(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        x = F.dropout(self.embedding(tokens), self.dropout, self.training)
        h, state = self.rnn(x, state)
        return F.dropout(h, self.dropout, self.training), state

    def log_prob(self, tokens: Tensor, targets: Tensor, state=None) -> tuple[Tensor, object]:
        """log P(targets[t, n] | tokens[≤t, n]) of shape (L, N), and the final state."""
        h, state = self(tokens, state)
        return self.head.log_prob(h.flatten(0, 1), targets.flatten()).view_as(targets), state
