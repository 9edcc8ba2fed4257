"""Language modelling: the loss (mean negative log-likelihood) and the reported figures."""

from __future__ import annotations

import math

import torch

from rnnkit.data.batching import batchify, bptt_windows
from rnnkit.models.language_model import LanguageModel


def lm_figures(nll_sum: float, tokens: int) -> dict[str, float]:
    """Mean loss in nats, perplexity exp(loss) and bits per token (loss / ln 2)."""
    loss = nll_sum / max(tokens, 1)
    ppl = math.exp(loss) if loss < 700 else math.inf
    return {"loss": loss, "ppl": ppl, "bits": loss / math.log(2), "tokens": tokens}


@torch.no_grad()
def evaluate_lm(
    model: LanguageModel, stream: torch.Tensor, batch_size: int, bptt: int, device: torch.device
) -> dict[str, float]:
    """Perplexity of ``stream`` with the state carried across every window.

    The stream is cut into ``batch_size`` columns (:func:`batchify`, dropping the last
    ``len % batch_size`` tokens); within a column nothing depends on the batch size or
    on ``bptt``, because the state flows on from window to window.
    """
    model.eval()
    columns = batchify(stream, batch_size).to(device)
    state, nll, count = None, 0.0, 0
    for _, x, y in bptt_windows(columns, bptt):
        logp, state = model.log_prob(x, y, state)
        nll -= logp.sum().item()
        count += y.numel()
    return lm_figures(nll, count)
