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
from rnnkit.data.text import Codec, split_lines
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import iter_lines, read_text
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

RAW_TEXT_LEVELS = ("char", "bpe")
"""Levels whose tokens are not words: evaluation also reports per word and per byte."""


def text_figures(
    figures: dict[str, float], level: str, tokens: int, oov: int | None, words: int, nbytes: int
) -> dict[str, float]:
    """``figures`` of a held-out text plus what makes them comparable across runs.

    ``oov`` tokens of the text's ``tokens`` are not in the vocabulary (scored as
    ``<unk>``): ``oov`` and ``oov_rate`` (none for a vocabulary without ``<unk>``, BPE's,
    which reads any text: ``oov`` is ``None``). For ``char`` and ``bpe`` models also the
    perplexity per word (``word_ppl``: over ``words``, the whitespace-separated words plus
    one per line end, which are a word model's tokens with its ``<eos>``) and ``bits_per_byte``
    (over the text's UTF-8 bytes). Both take the text's total NLL as the mean loss per
    predicted token times its ``tokens`` (the batch columns leave a few unpredicted).
    """
    out = dict(figures)
    if oov is not None:
        out.update(oov=oov, oov_rate=oov / max(tokens, 1))
    if level in RAW_TEXT_LEVELS:
        nll = figures["loss"] * tokens
        per_word = nll / max(words, 1)
        out.update(
            words=words,
            word_ppl=math.exp(per_word) if per_word < 700 else math.inf,
            bytes=nbytes,
            bits_per_byte=nll / math.log(2) / max(nbytes, 1),
        )
    return out


def _line_counts(line: str) -> tuple[int, int]:
    """(words with the line end, UTF-8 bytes) of one line."""
    return len(line.split()) + 1, len(line.encode("utf-8"))


def describe(split: str, figures: dict[str, float], level: str) -> str:
    """One line of figures in the units a reader of that level expects.

    Word and subword models are judged by perplexity; character and symbol models by
    bits per character / symbol (PTB-char's convention), perplexity in parentheses.
    """
    unit = UNITS[level]
    if level in ("char", "symbol"):
        line = (
            f"{split}: {figures['bits']:.4f} bits per {unit} (loss {figures['loss']:.4f} nats, "
            f"ppl {figures['ppl']:.3f}) over {figures['tokens']} {unit}s"
        )
    else:
        line = (
            f"{split}: ppl {figures['ppl']:.2f} per {unit} (loss {figures['loss']:.4f} nats, "
            f"{figures['bits']:.4f} bits) over {figures['tokens']} {unit}s"
        )
    if "word_ppl" in figures:
        line += (
            f"; per word ppl {figures['word_ppl']:.2f} over {figures['words']} words (line ends "
            f"included); {figures['bits_per_byte']:.4f} bits per byte over {figures['bytes']} bytes"
        )
    if "oov" in figures:
        line += f"; {figures['oov']} out of vocabulary ({100 * figures['oov_rate']:.2f}%), scored as <unk>"
    return line


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

    total = unknown = words = nbytes = 0
    for _, line in iter_lines(path, "corpus file"):
        tokens = codec.line_tokens(line)
        total += len(tokens)
        unknown += sum(t not in vocab for t in tokens)
        line_words, line_bytes = _line_counts(line)
        words, nbytes = words + line_words, nbytes + line_bytes
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
    figures = _evaluate_windows(model, windows, device)
    return text_figures(figures, codec.level, total, None if vocab.unk is None else unknown, words, nbytes)


def heldout_tokens(path: str | os.PathLike, valid_fraction: float, codec: Codec) -> list[str]:
    """The validation tokens of one corpus file split by a fraction, cut exactly as
    :func:`rnnkit.data.corpora.load_corpus` cuts them (by characters for ``bpe``, whose
    tokenizer never saw them, by tokens otherwise)."""
    text = read_text(path, "corpus file")
    if codec.level == "bpe":
        return codec.corpus_tokens(text[int(len(text) * (1 - valid_fraction)) :])
    tokens = codec.corpus_tokens(text)
    return tokens[int(len(tokens) * (1 - valid_fraction)) :]


@torch.no_grad()
def evaluate_tokens(
    model: LanguageModel,
    tokens: list[str],
    codec: Codec,
    vocab: Vocab,
    batch_size: int,
    bptt: int,
    device: torch.device,
    source: str | os.PathLike = "text",
) -> dict[str, float]:
    """:func:`evaluate_lm` of a text's ``tokens`` with :func:`text_figures` (out of
    vocabulary; per word and per byte for raw-text levels)."""
    if not tokens:
        raise RnnkitError(f"{source}: no tokens to evaluate")
    unknown = sum(t not in vocab for t in tokens)
    check_known(vocab, unknown, len(tokens), source)
    figures = evaluate_lm(model, vocab.encode(tokens), batch_size, bptt, device)
    words = nbytes = 0
    if codec.level in RAW_TEXT_LEVELS:
        for line in split_lines(codec.join(tokens)):
            line_words, line_bytes = _line_counts(line)
            words, nbytes = words + line_words, nbytes + line_bytes
    oov = None if vocab.unk is None else unknown
    return text_figures(figures, codec.level, len(tokens), oov, words, nbytes)


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


def as_read(vocab: Vocab, tokens: list[str]) -> tuple[list[str], list[str]]:
    """``tokens`` as the model reads them (each unknown one replaced by ``<unk>``) and the
    unknown ones, in order."""
    if vocab.unk is None:
        return tokens, []
    unknown = [t for t in tokens if t not in vocab]
    return ([t if t in vocab else vocab.unk for t in tokens] if unknown else tokens), unknown


def _scored(tokens: list[str], unknown: list[str], logp: torch.Tensor | None) -> dict:
    """One line's figures: the tokens read (``<unk>`` where a word was unknown), their
    surprisal in bits, log P (nats), perplexity, and the out-of-vocabulary words."""
    if logp is None or logp.numel() == 0:
        tokens, logp = tokens[:0], torch.zeros(0, dtype=torch.float64)
    total = logp.sum().item()
    return {
        "tokens": tokens[len(tokens) - logp.numel() :],
        "surprisal_bits": (-logp / math.log(2)).tolist(),
        "logprob": total,
        "ppl": math.exp(-total / logp.numel()) if logp.numel() else 1.0,
        "oov": len(unknown),
        "unknown": unknown,
    }


@torch.no_grad()
def score_line(model: LanguageModel, vocab, codec: Codec, line: str) -> dict:
    """log P(line) under the model, conditioned on a sentence start, one token at a time.

    Returns the tokens as the model read them, their surprisal -log2 P (bits), the total
    log-probability (nats), the line's perplexity, and ``oov``/``unknown``: how many and
    which tokens are not in the vocabulary. Those are read and scored as ``<unk>`` (the
    probability of *some* rare word, not of that word), and ``tokens`` shows ``<unk>``.
    """
    tokens, unknown = as_read(vocab, codec.corpus_tokens(line + "\n"))  # the line, its sentence end
    ids = torch.tensor(_context(vocab, codec, tokens))
    if ids.numel() < 2:
        return _scored(tokens, unknown, None)
    device = next(model.parameters()).device
    ids = ids.to(device)
    logp, _ = model.log_prob(ids[:-1, None], ids[1:, None])
    return _scored(tokens, unknown, logp[:, 0].double().cpu())


@torch.no_grad()
def score_lines(model: LanguageModel, vocab, codec: Codec, lines: list[str]) -> list[dict]:
    """:func:`score_line` of every line, computed as one padded batch (lines of similar
    length together): the same figures to float rounding, many times faster."""
    read = [as_read(vocab, codec.corpus_tokens(line + "\n")) for line in lines]
    tokens, unknown = [r[0] for r in read], [r[1] for r in read]
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
        line_logp = logp[ends[column] - n : ends[column]] if n >= 1 else None
        results[i] = _scored(tokens[i], unknown[i], line_logp)
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
    the ``top_k`` tokens or the smallest set of probability ``top_p`` (nucleus sampling).

    With ``stop_at_eos`` it stops where :meth:`Codec.ends_text` says the text ends (the end
    of the sentence; for characters, a blank line), else after ``max_tokens``."""
    if temperature <= 0:
        raise RnnkitError(f"temperature must be positive, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise RnnkitError(f"top_p must be in (0, 1], got {top_p}")
    prompt_tokens = codec.prompt_tokens(prompt)
    ids = _context(vocab, codec, prompt_tokens)
    device = next(model.parameters()).device
    h, state = model(torch.tensor(ids, device=device)[:, None])
    out: list[str] = []
    previous = prompt_tokens[-1] if prompt_tokens else None
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
        if stop_at_eos and codec.ends_text(previous, token):
            if out and codec.ends_sentence(out[-1]):  # a char passage's blank line: keep no newline
                out.pop()
            break
        out.append(token)
        previous = token
        h, state = model(torch.tensor([[next_id]], device=device), state)
    return out
