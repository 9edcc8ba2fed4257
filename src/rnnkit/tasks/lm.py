"""The ``lm`` task: truncated BPTT over a token stream; perplexity, bits and what makes them comparable.

Generating, scoring and next-token distributions of a trained model are :mod:`rnnkit.inference`'s
(still importable from here).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import RunConfig
from rnnkit.data.batching import batchify, bptt_windows, num_windows, stream_windows
from rnnkit.data.corpora import Corpus, check_known, load_corpus, locate
from rnnkit.data.lines import Piece, read_pieces
from rnnkit.data.text import Codec, split_lines
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import open_binary, read_text
from rnnkit.models.config import build_model
from rnnkit.models.language_model import LanguageModel
from rnnkit.tasks.base import Batches, Data, Step, rebuilt
from rnnkit.training.run import check_vocab_size
from rnnkit.training.rundir import RunDir

_MOVED = ("generate", "next_distribution", "score_line", "score_lines", "as_read")


def __getattr__(name: str) -> Any:
    """The inference functions that lived here, now in :mod:`rnnkit.inference`."""
    if name in _MOVED:
        return getattr(importlib.import_module("rnnkit.inference"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_columns(tokens: int, columns: int, setting: str, what: str) -> None:
    """Refuse, naming ``what`` and the ``setting``, a text too short for ``columns`` of at least
    two tokens each (one window: an input and its next token)."""
    if tokens // columns < 2:
        raise RnnkitError(
            f"{setting} = {columns}: {what} has {tokens} tokens, too few for {columns} columns of 2 or "
            "more; lower it or give more text"
        )


def lm_figures(nll_sum: float, tokens: float) -> dict[str, float]:
    """Mean loss in nats, perplexity exp(loss) and bits per token (loss / ln 2)."""
    loss = nll_sum / max(tokens, 1)
    ppl = math.exp(loss) if loss < 700 else math.inf
    return {"loss": loss, "ppl": ppl, "bits": loss / math.log(2), "tokens": tokens}


class LanguageModelling:
    """The ``lm`` task: truncated BPTT over the training stream, perplexity on the splits.

    The stream is cut into ``train.batch_size`` columns; a batch is one window of
    ``train.bptt`` steps (AWD-LSTM's random lengths with ``train.variable_bptt``, the
    learning rate scaled by length / bptt), and the hidden state flows from window to
    window (the loop detaches it at each boundary). A corpus with an empty training stream
    (a trained run rebuilt by :meth:`from_run`) gives a task to evaluate, not to train.
    """

    equal_shares = True  # every rank's window has the same number of tokens: no weighting needed
    perplexity = True  # its loss is shown as perplexity (bits per character or symbol)

    def __init__(
        self, config: RunConfig, corpus: Corpus, device: torch.device, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.config, self.corpus, self.device = config, corpus, device
        self.model = self.build_model(config, corpus).to(device)
        rank, world = shard  # distributed: this rank's share of the columns
        if config.train.batch_size % world:
            raise RnnkitError(
                f"train.batch_size {config.train.batch_size} must be a multiple of the {world} processes"
            )
        self.columns = torch.empty(0, 0, dtype=torch.long)
        if corpus.train.numel():
            _check_columns(
                corpus.train.numel(), config.train.batch_size, "train.batch_size", "the training split"
            )
            columns = batchify(corpus.train, config.train.batch_size)
            share = config.train.batch_size // world
            self.columns = columns[:, rank * share : (rank + 1) * share].contiguous().to(device)

    # -- the registry's side: corpus, model, summary, a trained run --------------------------------
    @staticmethod
    def build_model(config: RunConfig, corpus: Corpus) -> LanguageModel:
        """The language model ``config.model`` describes, over the corpus's vocabulary."""
        return build_model(config.model, len(corpus.vocab))

    @classmethod
    def load_corpus(
        cls, data: Data, config: RunConfig, vocab: Vocab | None = None, codec: Codec | None = None
    ) -> Corpus:
        d = config.data
        files = locate(data["data"], data["train"], data["valid"], data["test"], d.valid_fraction)
        return load_corpus(files, d.level, d.min_freq, d.max_size, vocab=vocab, codec=codec)

    @classmethod
    def resume_corpus(cls, run_dir: Path, data: Data, config: RunConfig) -> Corpus:
        codec = Codec.load(run_dir, config.data.level)
        return cls.load_corpus(data, config, vocab=Vocab.load(RunDir(run_dir).vocab), codec=codec)

    @staticmethod
    def summary(corpus: Corpus) -> str:
        return f"vocabulary {len(corpus.vocab)}, {corpus.train.numel()} training tokens"

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        config: RunConfig,
        device: torch.device,
        data: str | Path | None = None,
        which: str = "best",
    ) -> LanguageModelling:
        """A trained language model with its vocabulary and codec (``data`` is not read: a
        language model evaluates a file streamed, see :func:`evaluate_file`)."""
        run = RunDir(run_dir)
        vocab = Vocab.load(run.vocab)
        codec = Codec.load(run_dir, config.data.level)
        empty = torch.empty(0, dtype=torch.long)
        task = cls(config, Corpus(vocab, codec, empty, None, None), torch.device("cpu"))
        check_vocab_size(run.checkpoint(which), len(vocab))
        rebuilt(task, run_dir, which, device)
        return task

    @staticmethod
    def line(config: RunConfig, split: str, figures: dict[str, float]) -> str:
        return describe(split, figures, config.data.level)

    @staticmethod
    def fields(config: RunConfig) -> dict[str, str]:
        return {"unit": UNITS[config.data.level]}

    @staticmethod
    def next_commands(run: str, split: str) -> list[str]:
        return [f"rnnkit evaluate {run} --split {split}", f"rnnkit generate {run}"]

    @staticmethod
    def count_unit(level: str) -> str:
        return UNITS.get(level, "token")

    # -- what the loop calls ----------------------------------------------------------------------
    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Batches:
        t = self.config.train
        windows = bptt_windows(self.columns, t.bptt, t.variable_bptt, generator, start=start)
        total = num_windows(self.columns.shape[0], t.bptt)
        return ((i + x.shape[0], (x, y)) for i, x, y in windows), total, start // t.bptt

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], state: Any) -> Step:
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
        t, stream = self.config.train, getattr(self.corpus, split)
        _check_columns(stream.numel(), t.eval_batch_size, "train.eval_batch_size", f"the {split} split")
        return evaluate_lm(self.model, stream, t.eval_batch_size, t.bptt, self.device)

    def report(self, split: str) -> dict[str, Any]:
        raise RnnkitError(
            "a language model; per-label reports and confusion matrices are for taggers and classifiers"
        )

    def selection(self, figures: dict[str, float]) -> float:
        return figures["loss"]

    def running(self, nll: float, count: float) -> dict[str, float]:
        figures = lm_figures(nll, count)
        return {"loss": figures["loss"], "ppl": figures["ppl"]}

    def describe(self, split: str, figures: dict[str, float]) -> str:
        return describe(split, figures, self.config.data.level)

    def save(self, run_dir: Path) -> None:
        self.corpus.vocab.save(RunDir(run_dir).vocab)
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
    path: str | os.PathLike[str],
    codec: Codec,
    vocab: Vocab,
    batch_size: int,
    bptt: int,
    device: torch.device,
) -> dict[str, float]:
    """:func:`evaluate_lm` of a corpus file, streamed: constant memory whatever its size.

    One pass counts the tokens, one finds where each of the ``batch_size`` columns (the
    same columns as :func:`batchify`) starts, then a reader per column streams it. Lines are
    read in pieces of at most :data:`EVAL_PIECE` bytes (a long line is never held whole).
    The result equals :func:`evaluate_lm` on the whole file's ids.
    """

    def ids(start: int = 0, first: bool = True, skip: int = 0) -> Iterator[int]:
        for piece in _pieces(path, start, first):
            tokens = codec.piece_tokens(piece.text, piece.end)[skip:]
            skip = 0
            yield from (vocab.index(t) for t in tokens)

    total = unknown = words = nbytes = 0
    for piece in _pieces(path):
        tokens = codec.piece_tokens(piece.text, piece.end)
        total += len(tokens)
        unknown += sum(t not in vocab for t in tokens)
        words += len(piece.text.split()) + (1 if piece.last else 0)  # a word model's tokens
        nbytes += piece.size + len(piece.end or "")
    if total == 0:
        raise RnnkitError(f"{path}: the corpus file is empty")
    check_known(vocab, unknown, total, os.fspath(path))
    T = total // batch_size
    starts, seen, wanted = {}, 0, [j * T for j in range(batch_size)]
    for piece in _pieces(path):  # (piece offset, whether it opens its line, tokens to skip) per column
        n = len(codec.piece_tokens(piece.text, piece.end))
        while wanted and wanted[0] < seen + n:
            first = wanted.pop(0)
            starts[first] = (piece.offset, piece.first, first - seen)
        seen += n
        if not wanted:
            break
    _check_columns(total, batch_size, "train.eval_batch_size", str(path))
    windows = stream_windows(lambda start: ids(*starts[start]), total, batch_size, bptt)
    figures = _evaluate_windows(model, windows, device)
    return text_figures(figures, codec.level, total, None if vocab.unk is None else unknown, words, nbytes)


EVAL_PIECE = 1 << 16
"""Bytes of a line :func:`evaluate_file` holds per column reader (64 KiB: a reader per column
of the evaluation batch, so a long line costs columns x this, not columns x the line)."""


def _pieces(path: str | os.PathLike[str], start: int = 0, first: bool = True) -> Iterator[Piece]:
    """The lines of a corpus file in pieces of :data:`EVAL_PIECE` bytes at most
    (:func:`rnnkit.data.lines.read_pieces`), from byte offset ``start`` (where a piece
    starts; ``first``: whether it opens its line)."""
    with open_binary(path, "corpus file") as handle:
        handle.seek(start)
        yield from read_pieces(handle, str(path), EVAL_PIECE, start, first)


def heldout_tokens(path: str | os.PathLike[str], valid_fraction: float, codec: Codec) -> list[str]:
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
    source: str | os.PathLike[str] = "text",
) -> dict[str, float]:
    """:func:`evaluate_lm` of a text's ``tokens`` with :func:`text_figures` (out of
    vocabulary; per word and per byte for raw-text levels)."""
    if not tokens:
        raise RnnkitError(f"{source}: no tokens to evaluate")
    unknown = sum(t not in vocab for t in tokens)
    check_known(vocab, unknown, len(tokens), os.fspath(source))
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
