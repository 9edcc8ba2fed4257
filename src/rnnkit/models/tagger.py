r"""The lecture's bidirectional tagger: per-token scores from a deep bidirectional RNN.

.. math::
    x_t = [L_{w_t};\ c(w_t)],\qquad
    h_t = [\overrightarrow{h}_t; \overleftarrow{h}_t] \text{ (the top layer)},\qquad
    e_t = W^{(S)} h_t

where :math:`c(w)` is an optional character-level feature: the final states of a small
bidirectional RNN over the word's characters (for rare and unknown words). The scores
:math:`e_t` go to a per-token softmax, or to a linear-chain :class:`~rnnkit.models.crf.CRF`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import RnnkitError
from rnnkit.layers.dropout import drop_rows, dropout
from rnnkit.layers.rnn import RNN
from rnnkit.models.crf import CRF
from rnnkit.models.heads import at_least_fp32


class CharFeature(nn.Module):
    """A word's characters through a bidirectional RNN: [last forward state; last backward state].

    Args:
        num_chars: size of the character vocabulary (id 0 is padding).
        embed_size: size of a character vector.
        rnn: a bidirectional :class:`~rnnkit.layers.RNN` over character vectors.
    """

    def __init__(self, num_chars: int, embed_size: int, rnn: RNN) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embed_size, padding_idx=0)
        self.rnn = rnn

    @property
    def out_size(self) -> int:
        return self.rnn.hidden_size * self.rnn.num_directions

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        """chars (C, W) character ids of W words, lengths (W,) -> features (W, out_size)."""
        _, final = self.rnn(self.embedding(chars), lengths=lengths)
        h = final[0] if isinstance(final, tuple) else final  # (D*layers, W, H)
        D = self.rnn.num_directions
        return torch.cat(list(h[-D:]), dim=-1)


class Tagger(nn.Module):
    """Embeddings (+ character features) -> deep bidirectional RNN -> tag scores (+ CRF).

    Args:
        vocab_size: word vocabulary size.
        embed_size: word vector size.
        rnn: the encoder (:func:`rnnkit.rnn`, usually ``bidirectional=True``).
        num_tags: number of tags.
        chars: optional :class:`CharFeature`; its output is concatenated to the word vector.
        dropout: dropout on the encoder's output, and on its input unless ``input_dropout``.
        input_dropout: dropout on the encoder's input (word vector + character feature).
        embedding_dropout: drop whole words from the embedding matrix (the same words at
            every position; a dropped word's vector is zero, its characters still read).
        crf: decode with a linear-chain CRF instead of a per-token softmax.

    ``forward(words, lengths, chars=None)`` returns the scores (L, N, num_tags);
    :meth:`log_likelihood` the per-sentence log-probability of gold tags, and
    :meth:`decode` the predicted tags.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        rnn: RNN,
        num_tags: int,
        chars: CharFeature | None = None,
        dropout: float = 0.0,
        crf: bool = False,
        input_dropout: float | None = None,
        embedding_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.chars = chars
        self.rnn = rnn
        self.proj = nn.Linear(rnn.hidden_size * rnn.num_directions, num_tags)
        self.crf = CRF(num_tags) if crf else None
        self.dropout = dropout
        self.input_dropout = dropout if input_dropout is None else input_dropout
        self.embedding_dropout = embedding_dropout

    def forward(
        self, words: Tensor, lengths: Tensor, chars: tuple[Tensor, Tensor, Tensor] | None = None
    ) -> Tensor:
        """words (L, N); chars as (char ids (C, W), word lengths (W,), word index (L, N) into W)."""
        x = F.embedding(words, drop_rows(self.embedding.weight, self.embedding_dropout, self.training), 0)
        if self.chars is not None:
            if chars is None:
                raise RnnkitError("this tagger reads characters: pass chars")
            char_ids, char_lengths, index = chars
            x = torch.cat([x, self.chars(char_ids, char_lengths)[index]], dim=-1)
        x = dropout(x, self.input_dropout, self.training)
        h, _ = self.rnn(x, lengths=lengths)
        return self.proj(dropout(h, self.dropout, self.training))

    def log_likelihood(self, scores: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """log p(gold tags | sentence) per sentence (N,): the CRF's, or the sum of per-token softmaxes."""
        scores = at_least_fp32(scores)  # bf16 under autocast: the CRF's sums and softmaxes in fp32
        if self.crf is not None:
            return self.crf.log_likelihood(scores, tags, lengths)
        mask = torch.arange(scores.shape[0], device=scores.device)[:, None] < lengths[None, :]
        logp = F.log_softmax(scores, -1).gather(-1, tags.unsqueeze(-1)).squeeze(-1)
        return (logp * mask).sum(0)

    @torch.no_grad()
    def decode(self, scores: Tensor, lengths: Tensor) -> list[list[int]]:
        """Predicted tag ids of each sentence: Viterbi with a CRF, else the per-token argmax."""
        scores = at_least_fp32(scores)
        if self.crf is not None:
            return self.crf.decode(scores, lengths)
        best = scores.argmax(-1)
        return [best[: int(n), i].tolist() for i, n in enumerate(lengths)]
