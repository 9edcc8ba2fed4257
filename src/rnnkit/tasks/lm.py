"""Language modelling: the loss (mean negative log-likelihood) and the reported figures."""

from __future__ import annotations

import math

import torch

from rnnkit.data.batching import batchify, bptt_windows
from rnnkit.data.text import Codec
from rnnkit.errors import RnnkitError
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


def _context(vocab, codec: Codec, tokens: list[str]) -> list[int]:
    """Ids of ``tokens`` conditioned like a fresh line: after the previous sentence's end."""
    start = codec.sentence_end
    ids = ([vocab.index(start)] if start in vocab else []) + [vocab.index(t) for t in tokens]
    if not ids:
        raise RnnkitError("the prompt is empty and the vocabulary has no sentence start")
    return ids


@torch.no_grad()
def score_line(model: LanguageModel, vocab, codec: Codec, line: str) -> dict:
    """log P(line) under the model, conditioned on a sentence start, one token at a time.

    Returns the tokens, their surprisal -log2 P (bits), the total log-probability (nats)
    and the line's perplexity. Words not in the vocabulary are scored as ``<unk>``.
    """
    tokens = codec.corpus_tokens(line + "\n")  # the line, then its sentence end
    ids = torch.tensor(_context(vocab, codec, tokens))
    if ids.numel() < 2:
        return {"tokens": tokens, "surprisal_bits": [], "logprob": 0.0, "ppl": 1.0}
    device = next(model.parameters()).device
    ids = ids.to(device)
    logp, _ = model.log_prob(ids[:-1, None], ids[1:, None])
    logp = logp[:, 0].double()
    scored = tokens[-logp.numel() :]
    total = logp.sum().item()
    return {
        "tokens": scored,
        "surprisal_bits": (-logp / math.log(2)).tolist(),
        "logprob": total,
        "ppl": math.exp(-total / logp.numel()),
    }


@torch.no_grad()
def next_distribution(
    model: LanguageModel, vocab, codec: Codec, prefix: str, k: int = 10
) -> list[tuple[str, float]]:
    """The ``k`` most probable next tokens after ``prefix`` with their probabilities."""
    ids = torch.tensor(_context(vocab, codec, codec.prompt_tokens(prefix)))
    device = next(model.parameters()).device
    h, _ = model(ids[:, None].to(device))
    probs = model.head.log_probs(h[-1]).exp()[0]
    top = probs.topk(min(k, probs.numel()))
    return [(vocab.tokens[i], p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


@torch.no_grad()
def generate(
    model: LanguageModel,
    vocab,
    codec: Codec,
    prompt: str = "",
    max_tokens: int = 50,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
) -> list[str]:
    """Sample a continuation of ``prompt``: softmax(logits / temperature), optionally cut to
    the ``top_k`` tokens or the smallest set of probability ``top_p`` (nucleus sampling)."""
    if temperature <= 0:
        raise RnnkitError(f"temperature must be positive, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise RnnkitError(f"top_p must be in (0, 1], got {top_p}")
    ids = _context(vocab, codec, codec.prompt_tokens(prompt))
    device = next(model.parameters()).device
    h, state = model(torch.tensor(ids, device=device)[:, None])
    out: list[str] = []
    for _ in range(max_tokens):
        logits = model.head.log_probs(h[-1])[0] / temperature
        if top_k is not None:
            cut = logits.topk(min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < cut, -math.inf)
        if top_p is not None:
            sorted_logits, order = logits.sort(descending=True)
            keep = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1) < top_p
            logits = torch.full_like(logits, -math.inf).scatter(0, order[keep], sorted_logits[keep])
        next_id = int(torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator))
        token = vocab.tokens[next_id]
        if stop_at_eos and codec.ends_sentence(token):
            break
        out.append(token)
        h, state = model(torch.tensor([[next_id]], device=device), state)
    return out
