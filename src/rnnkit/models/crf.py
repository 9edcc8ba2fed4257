r"""A linear-chain conditional random field over per-token scores (Lafferty et al. 2001).

For emission scores :math:`e_t(y)` from the tagger's RNN and learned transition scores
:math:`A_{y', y}` (plus start and end scores), a tag sequence scores

.. math::
    s(y_{1:n}) = \text{start}_{y_1} + \sum_{t=1}^{n} e_t(y_t)
                 + \sum_{t=2}^{n} A_{y_{t-1}, y_t} + \text{end}_{y_n}

and :math:`\log p(y \mid x) = s(y) - \log Z`, with :math:`\log Z = \operatorname{logsumexp}_y s(y)`
computed by the forward algorithm in O(n K²). Decoding is Viterbi. Time-major like the rest
of rnnkit: emissions (L, N, K), sequences of ``lengths`` (N,) real steps; padding never
enters a score.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.layers.state import step_mask


class CRF(nn.Module):
    """Transition, start and end scores over ``num_tags`` tags, and the CRF's algorithms.

    Args:
        num_tags: K.

    ``log_likelihood(emissions, tags, lengths)`` gives log p(tags | x) per sequence (N,);
    ``decode(emissions, lengths)`` the best tag sequence of each (a list of lists).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [previous, next]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """s(y) of the given tag sequences, (N,)."""
        L, N, _ = emissions.shape
        mask = step_mask(lengths, L).squeeze(-1).to(emissions.dtype)  # (L, N)
        columns = torch.arange(N, device=emissions.device)
        total = self.start[tags[0]] + emissions[0, columns, tags[0]]
        for t in range(1, L):
            step = emissions[t, columns, tags[t]] + self.transitions[tags[t - 1], tags[t]]
            total = total + step * mask[t]
        last = tags.gather(0, (lengths - 1).view(1, N)).squeeze(0)
        return total + self.end[last]

    def log_partition(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """log Z by the forward algorithm, (N,)."""
        L = emissions.shape[0]
        mask = step_mask(lengths, L).squeeze(-1)  # (L, N)
        alpha = self.start + emissions[0]  # (N, K): log-summed scores of the prefixes ending in each tag
        for t in range(1, L):
            # alpha_t(y) = e_t(y) + logsumexp_{y'} (alpha_{t-1}(y') + A[y', y])
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[t]
            alpha = torch.where(mask[t].unsqueeze(1), step, alpha)  # past the end: unchanged
        return torch.logsumexp(alpha + self.end, dim=1)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """log p(tags | x) = s(tags) - log Z, per sequence (N,)."""
        return self.score(emissions, tags, lengths) - self.log_partition(emissions, lengths)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """The highest-scoring tag sequence of each sequence (Viterbi)."""
        L, N, _ = emissions.shape
        mask = step_mask(lengths, L).squeeze(-1)  # (L, N)
        best = self.start + emissions[0]
        back = []
        for t in range(1, L):
            candidates = best.unsqueeze(2) + self.transitions  # (N, K_prev, K_next)
            scores, previous = candidates.max(dim=1)
            back.append(previous)
            best = torch.where(mask[t].unsqueeze(1), scores + emissions[t], best)
        best = best + self.end
        paths = []
        for n in range(N):
            length = int(lengths[n])
            tag = int(best[n].argmax())
            path = [tag]
            for t in range(length - 1, 0, -1):
                tag = int(back[t - 1][n, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths
