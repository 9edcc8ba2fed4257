"""Language modelling: the loss (mean negative log-likelihood) and the reported figures."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from rnnkit.config import RunConfig
from rnnkit.data.batching import batchify, bptt_windows, num_windows, stream_windows
from rnnkit.data.corpora import Corpus, check_known
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import iter_lines
from rnnkit.models.config import build_model
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks.base import Step


def lm_figures(nll_sum: float, tokens: int) -> dict[str, float]:
    """Mean loss in nats, perplexity exp(loss) and bits per token (loss / ln 2)."""
    loss = nll_sum / max(tokens, 1)
    ppl = math.exp(loss) if loss < 700 else math.inf
    return {"loss": loss, "ppl": ppl, "bits": loss / math.log(2), "tokens": tokens}


class LanguageModelling:
    """The ``lm`` task: truncated BPTT over the training stream, perplexity on the splits.

    The stream is cut into ``train.batch_size`` columns; a batch is one window of
    ``train.bptt`` steps (AWD-LSTM's random lengths with ``train.variable_bptt``, the
    learning rate scaled by length / bptt), and the hidden state flows from window to
    window (the loop detaches it at each boundary).
    """

    equal_shares = True  # every rank's window has the same number of tokens: no weighting needed

    def __init__(
        self, config: RunConfig, corpus: Corpus, device: torch.device, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.config, self.corpus, self.device = config, corpus, device
        self.model = build_model(config.model, len(corpus.vocab)).to(device)
        columns = batchify(corpus.train, config.train.batch_size)
        rank, world = shard  # distributed: this rank's share of the columns
        if config.train.batch_size % world:
            raise RnnkitError(
                f"train.batch_size {config.train.batch_size} must be a multiple of the {world} processes"
            )
        share = config.train.batch_size // world
        self.columns = columns[:, rank * share : (rank + 1) * share].contiguous().to(device)

    def batches(self, epoch: int, start: int, generator: torch.Generator):
        t = self.config.train
        windows = bptt_windows(self.columns, t.bptt, t.variable_bptt, generator, start=start)
        total = num_windows(self.columns.shape[0], t.bptt)
        return ((i + x.shape[0], (x, y)) for i, x, y in windows), total, start // t.bptt

    def step(self, batch, state) -> Step:
        x, y = batch
        logp, state = self.model.log_prob(x, y, state)
        t = self.config.train
        return Step(
            -logp.mean(),
            -logp.sum().item(),
            y.numel(),
            state,
            x.shape[0] / t.bptt if t.variable_bptt else 1.0,
        )

    def has_split(self, split: str) -> bool:
        return getattr(self.corpus, split) is not None

    def evaluate(self, split: str) -> dict[str, float]:
        t = self.config.train
        return evaluate_lm(self.model, getattr(self.corpus, split), t.eval_batch_size, t.bptt, self.device)

    def selection(self, figures: dict[str, float]) -> float:
        return figures["loss"]

    def running(self, nll: float, count: int) -> dict[str, float]:
        figures = lm_figures(nll, count)
        return {"loss": figures["loss"], "ppl": figures["ppl"]}

    def describe(self, split: str, figures: dict[str, float]) -> str:
        return describe(split, figures, self.config.data.level)

    def save(self, run_dir: Path) -> None:
        self.corpus.vocab.save(run_dir / "vocab.json")
        self.corpus.codec.save(run_dir)


UNITS = {"word": "word", "symbol": "symbol", "char": "character", "bpe": "subword"}
"""What one predicted token is, per level: perplexity is per word, bits per character."""


def describe(split: str, figures: dict[str, float], level: str) -> str:
    """One line of figures in the units a reader of that level expects.

    Word and subword models are judged by perplexity; character and symbol models by
    bits per character / symbol (PTB-char's convention), perplexity in parentheses.
    """
    unit = UNITS[level]
    if level in ("char", "symbol"):
        return (
            f"{split}: {figures['bits']:.4f} bits per {unit} (loss {figures['loss']:.4f} nats, "
            f"ppl {figures['ppl']:.3f}) over {figures['tokens']} {unit}s"
        )
    return (
        f"{split}: ppl {figures['ppl']:.2f} per {unit} (loss {figures['loss']:.4f} nats, "
        f"{figures['bits']:.4f} bits) over {figures['tokens']} {unit}s"
    )


@torch.no_grad()
def evaluate_lm(
    model: LanguageModel, stream: torch.Tensor, batch_size: int, bptt: int, device: torch.device
) -> dict[str, float]:
    """Perplexity of ``stream`` with the state carried across every window.

    The stream is cut into ``batch_size`` columns (:func:`batchify`, dropping the last
    ``len % batch_size`` tokens); within a column nothing depends on the batch size or
    on ``bptt``, because the state flows on from window to window.
    """
    columns = batchify(stream, batch_size).to(device)
    return _evaluate_windows(model, ((x, y) for _, x, y in bptt_windows(columns, bptt)), device)


@torch.no_grad()
def evaluate_file(
    model: LanguageModel,
    path: str | os.PathLike,
    codec: Codec,
    vocab: Vocab,
    batch_size: int,
    bptt: int,
    device: torch.device,
) -> dict[str, float]:
    """:func:`evaluate_lm` of a corpus file, streamed: constant memory whatever its size.

    One pass counts the tokens, one finds where each of the ``batch_size`` columns (the
    same columns as :func:`batchify`) starts, then a reader per column streams it. The
    result equals :func:`evaluate_lm` on the whole file's ids.
    """

    def ids(start: int = 0, skip: int = 0) -> Iterator[int]:
        for _, line in iter_lines(path, "corpus file", start):
            tokens = codec.line_tokens(line)[skip:]
            skip = 0
            yield from (vocab.index(t) for t in tokens)

    total = unknown = 0
    for _, line in iter_lines(path, "corpus file"):
        tokens = codec.line_tokens(line)
        total += len(tokens)
        unknown += sum(t not in vocab for t in tokens)
    if total == 0:
        raise RnnkitError(f"{path}: the corpus file is empty")
    check_known(vocab, unknown, total, path)
    T = total // batch_size
    starts, seen, wanted = {}, 0, [j * T for j in range(batch_size)]
    for offset, line in iter_lines(path, "corpus file"):  # (line offset, tokens to skip) per column
        n = len(codec.line_tokens(line))
        while wanted and wanted[0] < seen + n:
            first = wanted.pop(0)
            starts[first] = (offset, first - seen)
        seen += n
        if not wanted:
            break
    windows = stream_windows(lambda start: ids(*starts[start]), total, batch_size, bptt)
    return _evaluate_windows(model, windows, device)


def _evaluate_windows(
    model: LanguageModel, windows: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> dict[str, float]:
    model.eval()
    state, nll, count = None, 0.0, 0
    for x, y in windows:
        # The state flows on from window to window: each column is one long sequence.
        logp, state = model.log_prob(x.to(device), y.to(device), state)
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
def score_lines(model: LanguageModel, vocab, codec: Codec, lines: list[str]) -> list[dict]:
    """:func:`score_line` of every line, computed as one padded batch (lines of similar
    length together): the same figures to float rounding, many times faster."""
    tokens = [codec.corpus_tokens(line + "\n") for line in lines]
    ids = [_context(vocab, codec, t) for t in tokens]
    order = sorted(range(len(lines)), key=lambda i: len(ids[i]))
    results: list[dict] = [{}] * len(lines)
    device = next(model.parameters()).device
    longest = max((len(i) for i in ids), default=0)
    if longest >= 2:
        batch = torch.zeros(longest, len(lines), dtype=torch.long)
        for column, i in enumerate(order):
            batch[: len(ids[i]), column] = torch.tensor(ids[i])
        batch = batch.to(device)
        h, _ = model(batch[:-1])  # padding comes after each line: it never leaks back
        counts = torch.tensor([len(ids[i]) - 1 for i in order], device=device).clamp(min=0)
        real = torch.arange(longest - 1, device=device)[None, :] < counts[:, None]  # (N, L)
        # the output layer on real positions only, one line after another
        logp = model.head.log_prob(h.transpose(0, 1)[real], batch[1:].T[real]).double().cpu()
        ends = counts.cumsum(0).tolist()
    for column, i in enumerate(order):
        n = len(ids[i]) - 1
        if n < 1:
            results[i] = {"tokens": tokens[i], "surprisal_bits": [], "logprob": 0.0, "ppl": 1.0}
            continue
        line_logp = logp[ends[column] - n : ends[column]]
        total = line_logp.sum().item()
        results[i] = {
            "tokens": tokens[i][-n:],
            "surprisal_bits": (-line_logp / math.log(2)).tolist(),
            "logprob": total,
            "ppl": math.exp(-total / n),
        }
    return results


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
