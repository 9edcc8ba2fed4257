"""Output heads: ŷ = softmax(W_S h), full or adaptive, behind one small protocol."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import RnnkitError


class OutputHead(nn.Module):
    """Turns features h (M, H) into log-probabilities over a vocabulary.

    ``log_prob(h, targets)`` gives log P(target_m | h_m), shape (M,), for training and
    evaluation; ``log_probs(h)`` gives every token's, shape (M, V), for generation.
    """

    def log_prob(self, h: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def log_probs(self, h: Tensor) -> Tensor:
        raise NotImplementedError


def at_least_fp32(t: Tensor) -> Tensor:
    """``t`` in fp32 if it is bf16/fp16 (logits under autocast: softmaxes and sums of
    scores are taken in fp32), else as it is (fp32 and fp64 models keep their dtype)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


class FullSoftmax(OutputHead):
    r"""The lecture's :math:`\hat y_t = \operatorname{softmax}(W^{(S)} h_t)` (plus a bias if asked).

    Args:
        hidden_size: size of h.
        vocab_size: |V|.
        bias: add a bias to the logits (the slide has none).
    """

    def __init__(self, hidden_size: int, vocab_size: int, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, vocab_size, bias=bias)

    def log_prob(self, h: Tensor, targets: Tensor) -> Tensor:
        return -F.cross_entropy(at_least_fp32(self.proj(h)), targets, reduction="none")

    def log_probs(self, h: Tensor) -> Tensor:
        return F.log_softmax(at_least_fp32(self.proj(h)), dim=-1)


class AdaptiveSoftmax(OutputHead):
    """Grave et al. 2017: frequent tokens in a small head, rare ones in smaller tail
    clusters, so training never forms the full |V| logits (``nn.AdaptiveLogSoftmaxWithLoss``).

    Args:
        hidden_size: size of h.
        vocab_size: |V|; ids must be sorted by frequency (``Vocab.build`` does that).
        cutoffs: increasing cluster boundaries, each in (0, |V|).
        div_value: how much smaller each tail cluster's projection is (cluster i, counted
            from 1, projects h to ``hidden_size // div_value**i`` dimensions); at least 1.
        bias: a bias on the head's logits (frequent words and cluster scores), as the full
            softmax has; torch's module leaves it off by default.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        cutoffs: Sequence[int],
        div_value: float = 4.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        cutoffs = list(cutoffs)
        if not cutoffs or cutoffs != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= vocab_size:
            raise RnnkitError(
                "adaptive softmax cutoffs must increase strictly within "
                f"(0, vocab size {vocab_size}), got {cutoffs}"
            )
        if not div_value >= 1:
            raise RnnkitError(f"model.div_value must be at least 1, got {div_value}")
        if hidden_size // div_value ** len(cutoffs) < 1:
            raise RnnkitError(
                f"adaptive softmax: hidden size {hidden_size} / div_value {div_value} ** {len(cutoffs)} "
                "clusters leaves the last cluster an empty projection; "
                "use fewer cutoffs or a smaller div_value"
            )
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(
            hidden_size, vocab_size, cutoffs, div_value=div_value, head_bias=bias
        )

    def log_prob(self, h: Tensor, targets: Tensor) -> Tensor:
        with _fp32(h):  # torch's module would return bf16 log-probabilities under autocast
            return self.asm(at_least_fp32(h), targets).output

    def log_probs(self, h: Tensor) -> Tensor:
        with _fp32(h):
            return self.asm.log_prob(at_least_fp32(h))


def _fp32(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off on ``t``'s device, if it was on."""
    on = torch.is_autocast_enabled(t.device.type)
    return torch.autocast(t.device.type, enabled=False) if on else contextlib.nullcontext()
