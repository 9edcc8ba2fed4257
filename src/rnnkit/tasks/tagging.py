"""The ``tag`` task: a (deep) bidirectional RNN tags every word; accuracy or entity F1.

Part-of-speech tags (CoNLL-U, e.g. UPOS of UD English EWT) are scored by token accuracy
on syntactic words; entity tags (CoNLL-2003's IOB1) are learned in BIOES and scored as
``conlleval`` scores them, on chunks, after converting the predictions back to IOB1.
Sentences are batched by length (similar lengths together, the batches shuffled each
epoch with a generator seeded by the run's seed and the epoch, so a resumed epoch sees the
same order); padding never reaches a score.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import RunConfig
from rnnkit.data import download
from rnnkit.data.conll import (
    Sentence,
    bio_to_bioes,
    bio_to_iob1,
    bioes_to_bio,
    iob1_to_bio,
    read_conll2003,
    read_conllu,
)
from rnnkit.data.text import word_key
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json, write_text_atomic
from rnnkit.models.config import build_tagger  # lived here before models/ built every model
from rnnkit.models.tagger import Tagger
from rnnkit.tasks.base import Batches, Data, Step, rebuilt, sentence_task_commands, shuffled_batches
from rnnkit.tasks.tagging_metrics import format_report, label_report, span_scores, token_accuracy
from rnnkit.training.rundir import TAGGING, RunDir

PAD, UNK = "<pad>", "<unk>"
_SPAN = re.compile(r"^(O|[BIES]-.+)$")


@dataclass
class TaggedCorpus:
    """Sentences of each split and the vocabularies built on train."""

    train: list[Sentence]
    valid: list[Sentence] | None
    test: list[Sentence] | None
    words: Vocab
    chars: Vocab
    tags: Vocab
    spans: bool  # entity tags (IOB1 in the files, BIOES inside) rather than one label per word


def locate_tagged(data: str | Path) -> tuple[str, Path, Path | None, Path | None]:
    """(format, train, valid, test) of a tagging corpus directory: UD's ``*-ud-{train,dev,test}.conllu``
    or CoNLL-2003's ``eng.train``/``eng.testa``/``eng.testb``."""
    root = Path(data)
    if not root.is_dir():
        raise RnnkitError(f"{root}: not a directory of a tagging corpus")
    conllu = {split: sorted(root.glob(f"*{split}.conllu")) for split in ("train", "dev", "test")}
    if conllu["train"]:
        pick = {k: (v[0] if v else None) for k, v in conllu.items()}
        return "conllu", conllu["train"][0], pick["dev"], pick["test"]
    if (root / "eng.train").is_file():
        optional = [root / n if (root / n).is_file() else None for n in ("eng.testa", "eng.testb")]
        return "conll2003", root / "eng.train", optional[0], optional[1]
    raise RnnkitError(
        f"{root}: no tagging corpus found (expected *-train.conllu/*-dev.conllu/*-test.conllu or "
        "eng.train/eng.testa/eng.testb)"
    )


def read_tagged(path: Path, fmt: str, column: str) -> list[Sentence]:
    return read_conllu(path, column) if fmt == "conllu" else read_conll2003(path)


def load_tagged(
    data: str | Path, column: str = "upos", min_freq: int = 1, key: Callable[[str], str] = str
) -> TaggedCorpus:
    """Read a tagging corpus (a directory, or a named corpus such as ``ud-english-ewt``:
    downloaded and verified when missing) and build word (``<pad>``, ``<unk>``; of
    ``key(word)``, see :func:`rnnkit.data.text.word_key`), character and tag vocabularies."""
    fmt, train_path, valid_path, test_path = locate_tagged(download.resolve(data, task="tag"))
    train = read_tagged(train_path, fmt, column)
    valid = None if valid_path is None else read_tagged(valid_path, fmt, column)
    test = None if test_path is None else read_tagged(test_path, fmt, column)
    all_tags = {t for s in train for t in gold_tags(s)}
    spans = fmt == "conll2003" and all(_SPAN.match(t) for t in all_tags)
    words = Vocab.build((key(w) for s in train for w in s.words), min_freq=min_freq, specials=(PAD, UNK))
    chars = Vocab.build((c for s in train for w in s.words for c in w), specials=(PAD, UNK))
    tag_list = sorted({t for s in train for t in internal_tags(gold_tags(s), spans)})
    return TaggedCorpus(train, valid, test, words, chars, Vocab(tag_list, unk=None), spans)


def gold_tags(sentence: Sentence) -> list[str]:
    """The tags a sentence of a tagged corpus has (one read as raw text has none: an error)."""
    if sentence.tags is None:
        raise RnnkitError(f"{sentence.source}: sentence at line {sentence.line} has no tags")
    return sentence.tags


def internal_tags(tags: Sequence[str], spans: bool) -> list[str]:
    """The tags the model learns: BIOES for entity tags read as IOB1, else as they are."""
    return bio_to_bioes(iob1_to_bio(tags)) if spans else list(tags)


def external_tags(tags: Sequence[str], spans: bool) -> list[str]:
    """Predicted tags back in the file's scheme (IOB1 for entity tags)."""
    return bio_to_iob1(bioes_to_bio(tags)) if spans else list(tags)


MAX_WORDS = 1000
"""A sentence of more words is tagged in parts of this many (``predict --max-words``): ten
times the longest sentence of UD English EWT or CoNLL-2003, and memory stays bounded."""

MAX_WORD_CHARS = 1000
"""The characters features read of a longer word: its first and last 500 (the char RNN
summarises a word by its two ends); no word of a real corpus comes near."""


def _part(sentence: Sentence, start: int, end: int) -> Sentence:
    """Words ``start:end`` of ``sentence`` (and their gold tags), as a sentence."""
    if start == 0 and end >= len(sentence.words):
        return sentence
    tags = None if sentence.tags is None else sentence.tags[start:end]
    return Sentence(sentence.words[start:end], tags, sentence.source, sentence.line)


def warn_long(sentences: Sequence[Sentence], done: str, max_words: int | None = None) -> None:
    """One line on standard error when sentences have more than ``max_words`` words (default
    :data:`MAX_WORDS`), naming the first and saying what was ``done`` with them."""
    max_words = MAX_WORDS if max_words is None else max_words
    long = [s for s in sentences if len(s.words) > max_words]
    if long:
        first = long[0]
        where = f"{first.source}: line {first.line}" if first.source else f"sentence at line {first.line}"
        more = f" (and {len(long) - 1} more sentences)" if len(long) > 1 else ""
        print(
            f"rnnkit: warning: {where}: a sentence of {len(first.words)} words, more than {max_words}"
            f"{more}: {done} of {max_words} words",
            file=sys.stderr,
        )


CharTensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""A batch's characters: ids (C, W) of its W distinct words, their lengths (W,), and the
index (L, N) of each word's row."""


class Tagging:
    """The ``tag`` task for :func:`rnnkit.training.loop.fit`."""

    equal_shares = False  # ranks' batches hold different numbers of words
    perplexity = False  # its loss is drawn in nats, beside the accuracy or F1 that selects

    def __init__(
        self, config: RunConfig, corpus: TaggedCorpus, device: torch.device, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.config, self.corpus, self.device, self.shard = config, corpus, device, shard
        self.key = word_key(config.data.lowercase, config.data.zero_digits)
        self.model = self.build_model(config, corpus).to(device)
        order = sorted(range(len(corpus.train)), key=lambda i: len(corpus.train[i].words))
        size = config.train.batch_size
        self.train_batches = [order[i : i + size] for i in range(0, len(order), size)]

    # -- the registry's side: corpus, model, summary, a trained run --------------------------------
    @staticmethod
    def build_model(config: RunConfig, corpus: TaggedCorpus) -> Tagger:
        """The tagger ``config.model`` describes, over the corpus's words, characters and tags."""
        return build_tagger(config.model, len(corpus.words), len(corpus.chars), len(corpus.tags))

    @staticmethod
    def load_corpus(data: Data, config: RunConfig) -> TaggedCorpus:
        if data["data"] is None:
            raise RnnkitError(
                "a tagger trains on --data ud-english-ewt, or --data DIR (a UD treebank or CoNLL-2003 "
                "directory)"
            )
        d = config.data
        return load_tagged(data["data"], d.column, d.min_freq, word_key(d.lowercase, d.zero_digits))

    @classmethod
    def resume_corpus(cls, run_dir: Path, data: Data, config: RunConfig) -> TaggedCorpus:
        corpus = cls.load_corpus(data, config)
        if load_vocabularies(run_dir)[:3] != (corpus.words, corpus.chars, corpus.tags):
            raise RnnkitError(
                f"{run_dir}: the corpus at {data['data']} no longer gives the run's vocabularies"
            )
        return corpus

    @staticmethod
    def summary(corpus: TaggedCorpus) -> str:
        return f"{len(corpus.words)} words, {len(corpus.tags)} tags, {len(corpus.train)} training sentences"

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        config: RunConfig,
        device: torch.device,
        data: str | Path | None = None,
        which: str = "best",
    ) -> Tagging:
        if data is None:
            corpus = TaggedCorpus([], None, None, *load_vocabularies(run_dir))
        else:
            corpus = corpus_for_run(run_dir, data, config.data.column)
        task: Tagging = rebuilt(cls(config, corpus, torch.device("cpu")), run_dir, which, device)
        return task

    @staticmethod
    def line(config: RunConfig, split: str, figures: dict[str, float]) -> str:
        return Tagging.describe(split, figures)

    @staticmethod
    def fields(config: RunConfig) -> dict[str, str]:
        return {}

    @staticmethod
    def count_unit(level: str) -> str:
        return "word"

    next_commands = staticmethod(sentence_task_commands)

    # -- batches ---------------------------------------------------------------------------
    def tensors(
        self, sentences: Sequence[Sentence], with_tags: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, CharTensors | None, torch.Tensor | None]:
        """words (L, N), lengths (N,), characters (ids, lengths, index), tags (L, N) or None.

        Built as padded Python lists and turned into tensors once each (one torch call per
        token had cost more than the model's own step on small batches); the characters
        only when the model reads them.
        """
        c, key = self.corpus, self.key
        lengths = [len(s.words) for s in sentences]
        L = max(lengths)
        words = _padded([[c.words.index(key(w)) for w in s.words] for s in sentences], L)
        chars: CharTensors | None = None
        if self.model.chars is not None:
            unique: dict[str, int] = {}
            index = _padded([[unique.setdefault(w, len(unique)) for w in s.words] for s in sentences], L)
            half = MAX_WORD_CHARS // 2
            spelled = [w if len(w) <= MAX_WORD_CHARS else w[:half] + w[-half:] for w in unique]
            char_lengths = [max(1, len(w)) for w in spelled]
            char_ids = _padded([[c.chars.index(ch) for ch in w] for w in spelled], max(char_lengths))
            dev = self.device
            chars = (char_ids.to(dev), torch.tensor(char_lengths, device=dev), index.to(dev))
        tags = None
        if with_tags:
            tags = _padded(
                [[self._tag_id(t, s) for t in internal_tags(gold_tags(s), c.spans)] for s in sentences], L
            ).to(self.device)
        return words.to(self.device), torch.tensor(lengths, device=self.device), chars, tags

    def _tag_id(self, tag: str, sentence: Sentence) -> int:
        if tag not in self.corpus.tags:
            raise RnnkitError(
                f"{sentence.source}: sentence at line {sentence.line}: tag {tag!r} never seen in training "
                f"(known: {', '.join(self.corpus.tags.tokens[:20])})"
            )
        return self.corpus.tags.index(tag)

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Batches:
        return shuffled_batches(
            self.corpus.train, self.train_batches, self.config.train.seed, epoch, start, self.shard
        )

    def step(self, batch: list[Sentence], state: Any) -> Step:
        words, lengths, chars, tags = self.tensors(batch)
        assert tags is not None  # with_tags: a training sentence's tags, or an error naming it
        scores = self.model(words, lengths, chars)
        ll = self.model.log_likelihood(scores, tags, lengths)
        tokens = int(lengths.sum())
        return Step(-ll.sum() / tokens, -ll.sum().item(), tokens)

    # -- evaluation -----------------------------------------------------------------------------
    def has_split(self, split: str) -> bool:
        return getattr(self.corpus, split) is not None

    @torch.no_grad()
    def predict(
        self, sentences: Sequence[Sentence], max_words: int | None = None
    ) -> tuple[list[list[str]], float, int]:
        """Predicted tags (the file's scheme) of every sentence, and the summed NLL and tokens
        of the gold tags when the sentences have them.

        A sentence of more than ``max_words`` words (default :data:`MAX_WORDS`) is tagged in
        parts of that many, one after another (memory stays bounded; only the words near a
        cut lose the context across it), its NLL the sum of its parts'.
        """
        self.model.eval()
        max_words = MAX_WORDS if max_words is None else max_words
        if max_words < 1:
            raise RnnkitError(f"max_words must be at least 1, got {max_words}")
        parts = [
            (i, _part(s, start, start + max_words))
            for i, s in enumerate(sentences)
            for start in range(0, max(len(s.words), 1), max_words)
        ]
        order = sorted(range(len(parts)), key=lambda p: len(parts[p][1].words))
        internal: list[list[str]] = [[] for _ in sentences]
        paths: list[list[str]] = [[] for _ in parts]
        nll, tokens = 0.0, 0
        with_tags = all(s.tags is not None for s in sentences)
        size = max(self.config.train.batch_size, 32)
        for b in range(0, len(order), size):
            chunk = [parts[p][1] for p in order[b : b + size]]
            words, lengths, chars, tags = self.tensors(chunk, with_tags)
            scores = self.model(words, lengths, chars)
            if tags is not None:
                nll -= self.model.log_likelihood(scores, tags, lengths).sum().item()
                tokens += int(lengths.sum())
            for p, path in zip(order[b : b + size], self.model.decode(scores, lengths)):
                paths[p] = self.corpus.tags.decode(path)
        for (i, _), part_tags in zip(parts, paths):  # parts in order: a sentence's tags, whole again
            internal[i] += part_tags
        predictions = [external_tags(tags, self.corpus.spans) for tags in internal]
        return predictions, nll, tokens

    def evaluate(self, split: str) -> dict[str, float]:
        sentences = getattr(self.corpus, split)
        warn_long(sentences, "tagged in parts")
        predictions, nll, tokens = self.predict(sentences)
        gold = [s.tags for s in sentences]
        figures = {
            "loss": nll / max(tokens, 1),
            "accuracy": token_accuracy(gold, predictions),
            "tokens": tokens,
        }
        if self.corpus.spans:
            spans = span_scores(gold, predictions)
            figures.update(precision=spans["precision"], recall=spans["recall"], f1=spans["f1"])
        return figures

    def report(self, split: str) -> dict[str, Any]:
        """Per-tag scores and the confusion matrix on ``split`` (tags as the file writes them);
        for entity tags also conlleval's report (``conlleval`` text, ``per_type`` scores)."""
        sentences = getattr(self.corpus, split)
        warn_long(sentences, "tagged in parts")
        predictions, _, _ = self.predict(sentences)
        gold = [s.tags for s in sentences]
        report = label_report(gold, predictions)
        if self.corpus.spans:
            spans = span_scores(gold, predictions)
            report.update(per_type=spans["per_type"], conlleval=format_report(spans))
        return report

    def selection(self, figures: dict[str, float]) -> float:
        return -figures["f1"] if self.corpus.spans else -figures["accuracy"]

    def running(self, nll: float, count: float) -> dict[str, float]:
        return {"loss": nll / max(count, 1)}

    @staticmethod
    def describe(split: str, figures: dict[str, float]) -> str:
        if "f1" in figures:
            return (
                f"{split}: F1 {100 * figures['f1']:.2f}% (P {100 * figures['precision']:.2f}%, "
                f"R {100 * figures['recall']:.2f}%), accuracy {100 * figures['accuracy']:.2f}%"
            )
        return (
            f"{split}: accuracy {100 * figures['accuracy']:.2f}% (loss {figures['loss']:.4f}) "
            f"over {figures['tokens']} words"
        )

    def save(self, run_dir: Path) -> None:
        c = self.corpus
        payload = {
            "words": c.words.to_json(),
            "chars": c.chars.to_json(),
            "tags": c.tags.to_json(),
            "spans": c.spans,
        }
        write_text_atomic(RunDir(run_dir).tagging, json.dumps(payload, ensure_ascii=False) + "\n")


def load_vocabularies(run_dir: Path) -> tuple[Vocab, Vocab, Vocab, bool]:
    data = read_json(RunDir(run_dir).tagging, missing=f"{run_dir}: not a tagger run (no {TAGGING})")
    try:
        return (
            Vocab.from_json(data["words"]),
            Vocab.from_json(data["chars"]),
            Vocab.from_json(data["tags"]),
            bool(data["spans"]),
        )
    except (KeyError, TypeError):
        raise RnnkitError(f"{RunDir(run_dir).tagging}: not a tagger's vocabularies") from None


def corpus_for_run(run_dir: Path, data: str | Path, column: str) -> TaggedCorpus:
    """A trained run's vocabularies with the splits of ``data`` (for evaluation and prediction)."""
    words, chars, tags, spans = load_vocabularies(run_dir)
    fmt, _, valid_path, test_path = locate_tagged(download.resolve(data, task="tag"))
    valid = None if valid_path is None else read_tagged(valid_path, fmt, column)
    test = None if test_path is None else read_tagged(test_path, fmt, column)
    return TaggedCorpus([], valid, test, words, chars, tags, spans)


def _padded(rows: list[list[int]], length: int) -> torch.Tensor:
    """Time-major (length, len(rows)) ids, each row padded with 0 (the padding id)."""
    return torch.tensor([row + [0] * (length - len(row)) for row in rows], dtype=torch.long).T.contiguous()
