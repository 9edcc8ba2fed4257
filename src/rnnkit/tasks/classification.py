"""The ``classify`` task: one label per sentence (the Stanford Sentiment Treebank), accuracy.

Training may use every phrase of the SST trees as an example (``data.phrases``, as in the
literature); evaluation always uses whole sentences. Examples are batched by length, the
batches shuffled each epoch by a generator seeded by the run's seed and the epoch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.config import RunConfig
from rnnkit.data import download
from rnnkit.data.sst import CLASS_NAMES, read_sst
from rnnkit.data.text import word_key
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_json, write_text_atomic
from rnnkit.models.classifier import Classifier
from rnnkit.models.config import build_classifier  # lived here before models/ built every model
from rnnkit.tasks.base import Batches, Data, Step, rebuilt, sentence_task_commands, shuffled_batches
from rnnkit.tasks.tagging_metrics import label_report
from rnnkit.training.rundir import RunDir

PAD, UNK = "<pad>", "<unk>"
Example = tuple[list[str], int]


@dataclass
class ClassifiedCorpus:
    train: list[Example]
    valid: list[Example] | None
    test: list[Example] | None
    words: Vocab
    classes: int


def load_classified(
    data: str | Path,
    classes: int = 5,
    phrases: bool = False,
    min_freq: int = 1,
    key: Callable[[str], str] = str,
) -> ClassifiedCorpus:
    """An SST directory (``train.txt``, ``dev.txt``, ``test.txt`` of PTB trees), or the named
    corpus ``sst`` (downloaded and verified when missing); the word vocabulary is of
    ``key(word)`` (see :func:`rnnkit.data.text.word_key`)."""
    root = download.resolve(data, task="classify")
    if not (root / "train.txt").is_file():
        raise RnnkitError(f"{root}: expected an SST directory with train.txt, dev.txt, test.txt (PTB trees)")
    split = {n: (root / f"{n}.txt" if (root / f"{n}.txt").is_file() else None) for n in ("dev", "test")}
    train = read_sst(root / "train.txt", classes, phrases)
    valid = None if split["dev"] is None else read_sst(split["dev"], classes)
    test = None if split["test"] is None else read_sst(split["test"], classes)
    words = Vocab.build((key(w) for ws, _ in train for w in ws), min_freq=min_freq, specials=(PAD, UNK))
    return ClassifiedCorpus(train, valid, test, words, classes)


MAX_WORDS = 1000
"""A sentence of more words is classified on its first this many (``predict --max-words``):
twenty times SST's longest sentence."""


def warn_long(sentences: list[list[str]], max_words: int | None = None) -> None:
    """One line on standard error when sentences have more than ``max_words`` words (default
    :data:`MAX_WORDS`): they are classified on their first ``max_words``."""
    max_words = MAX_WORDS if max_words is None else max_words
    long = [n for n, s in enumerate(sentences, 1) if len(s) > max_words]
    if long:
        more = f" (and {len(long) - 1} more)" if len(long) > 1 else ""
        print(
            f"rnnkit: warning: sentence {long[0]} has {len(sentences[long[0] - 1])} words, more than "
            f"{max_words}{more}: classified on its first {max_words}",
            file=sys.stderr,
        )


class Classification:
    """The ``classify`` task for :func:`rnnkit.training.loop.fit`."""

    equal_shares = False  # the last batches of an epoch may be smaller
    perplexity = False  # its loss is drawn in nats, beside the accuracy or F1 that selects

    def __init__(
        self,
        config: RunConfig,
        corpus: ClassifiedCorpus,
        device: torch.device,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.config, self.corpus, self.device, self.shard = config, corpus, device, shard
        self.key = word_key(config.data.lowercase, config.data.zero_digits)
        self.model = self.build_model(config, corpus).to(device)
        # Batches of equal lengths, each drawn from across the corpus: SST's phrases of one
        # sentence sit together in the file, and a batch of them would share one sentiment.
        tiebreak = torch.randperm(
            len(corpus.train), generator=torch.Generator().manual_seed(config.train.seed)
        )
        order = sorted(range(len(corpus.train)), key=lambda i: (len(corpus.train[i][0]), int(tiebreak[i])))
        size = config.train.batch_size
        self.train_batches = [order[i : i + size] for i in range(0, len(order), size)]

    # -- the registry's side: corpus, model, summary, a trained run --------------------------------
    @staticmethod
    def build_model(config: RunConfig, corpus: ClassifiedCorpus) -> Classifier:
        """The classifier ``config.model`` describes, over the corpus's words and classes."""
        return build_classifier(config.model, len(corpus.words), corpus.classes)

    @staticmethod
    def load_corpus(data: Data, config: RunConfig) -> ClassifiedCorpus:
        if data["data"] is None:
            raise RnnkitError(
                "a classifier trains on --data sst, or --data DIR (an SST directory of PTB trees)"
            )
        d = config.data
        return load_classified(
            data["data"], d.classes, d.phrases, d.min_freq, word_key(d.lowercase, d.zero_digits)
        )

    @classmethod
    def resume_corpus(cls, run_dir: Path, data: Data, config: RunConfig) -> ClassifiedCorpus:
        corpus = cls.load_corpus(data, config)
        if saved_vocabulary(run_dir)[0] != corpus.words:
            raise RnnkitError(f"{run_dir}: the corpus at {data['data']} no longer gives the run's vocabulary")
        return corpus

    @staticmethod
    def summary(corpus: ClassifiedCorpus) -> str:
        return f"{len(corpus.words)} words, {corpus.classes} classes, {len(corpus.train)} training examples"

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        config: RunConfig,
        device: torch.device,
        data: str | Path | None = None,
        which: str = "best",
    ) -> Classification:
        if data is None:
            corpus = ClassifiedCorpus([], None, None, *saved_vocabulary(run_dir))
        else:
            corpus = corpus_for_run(run_dir, data)
        task: Classification = rebuilt(cls(config, corpus, torch.device("cpu")), run_dir, which, device)
        return task

    @staticmethod
    def line(config: RunConfig, split: str, figures: dict[str, float]) -> str:
        return Classification.describe(split, figures)

    @staticmethod
    def fields(config: RunConfig) -> dict[str, str]:
        return {}

    @staticmethod
    def count_unit(level: str) -> str:
        return "sentence"

    next_commands = staticmethod(sentence_task_commands)

    @property
    def class_names(self) -> list[str]:
        """The classes' names, by class number."""
        return list(CLASS_NAMES[self.corpus.classes])

    def tensors(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(ws) for ws, _ in examples])
        words = torch.zeros(int(lengths.max()), len(examples), dtype=torch.long)
        for n, (ws, _) in enumerate(examples):
            words[: len(ws), n] = torch.tensor([self.corpus.words.index(self.key(w)) for w in ws])
        labels = torch.tensor([label for _, label in examples])
        return words.to(self.device), lengths.to(self.device), labels.to(self.device)

    def batches(self, epoch: int, start: int, generator: torch.Generator) -> Batches:
        return shuffled_batches(
            self.corpus.train, self.train_batches, self.config.train.seed, epoch, start, self.shard
        )

    def step(self, batch: list[Example], state: Any) -> Step:
        words, lengths, labels = self.tensors(batch)
        logp = self.model(words, lengths).gather(1, labels[:, None]).squeeze(1)
        return Step(-logp.mean(), -logp.sum().item(), len(batch))

    def has_split(self, split: str) -> bool:
        return getattr(self.corpus, split) is not None

    @torch.no_grad()
    def log_probs(self, sentences: list[list[str]], max_words: int | None = None) -> torch.Tensor:
        """Class log-probabilities (N, C) of each sentence (a list of words; unknown words
        are ``<unk>``), computed in batches of similar length, returned in input order.

        A sentence of more than ``max_words`` words (default :data:`MAX_WORDS`) is classified
        on its first ``max_words``: a sentence is read into one vector, which parts of it
        cannot give (memory stays bounded; :func:`warn_long` tells the user).
        """
        self.model.eval()
        max_words = MAX_WORDS if max_words is None else max_words
        if max_words < 1:
            raise RnnkitError(f"max_words must be at least 1, got {max_words}")
        sentences = [s if len(s) <= max_words else s[:max_words] for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        out = torch.empty(len(sentences), self.corpus.classes)
        for b in range(0, len(order), 256):
            chunk = order[b : b + 256]
            words, lengths, _ = self.tensors([(sentences[i], 0) for i in chunk])
            out[chunk] = self.model(words, lengths).float().cpu()
        return out

    def predict(self, examples: list[Example]) -> tuple[list[int], float]:
        """The predicted class of each example, and the summed NLL of the gold labels."""
        warn_long([ws for ws, _ in examples])
        logp = self.log_probs([ws for ws, _ in examples])
        gold = torch.tensor([label for _, label in examples])
        return logp.argmax(-1).tolist(), -logp.gather(1, gold[:, None]).sum().item()

    def evaluate(self, split: str) -> dict[str, float]:
        examples = getattr(self.corpus, split)
        guesses, nll = self.predict(examples)
        correct = sum(g == label for g, (_, label) in zip(guesses, examples))
        return {"loss": nll / len(examples), "accuracy": correct / len(examples), "sentences": len(examples)}

    def report(self, split: str) -> dict[str, Any]:
        """Per-class scores and the confusion matrix on ``split``, classes by name."""
        examples = getattr(self.corpus, split)
        guesses, _ = self.predict(examples)
        names = self.class_names
        gold = [[names[label]] for _, label in examples]
        return label_report(gold, [[names[g]] for g in guesses], labels=names)

    def selection(self, figures: dict[str, float]) -> float:
        return -figures["accuracy"]

    def running(self, nll: float, count: float) -> dict[str, float]:
        return {"loss": nll / max(count, 1)}

    @staticmethod
    def describe(split: str, figures: dict[str, float]) -> str:
        return (
            f"{split}: accuracy {100 * figures['accuracy']:.2f}% (loss {figures['loss']:.4f}) "
            f"over {figures['sentences']} sentences"
        )

    def save(self, run_dir: Path) -> None:
        payload = {"words": self.corpus.words.to_json(), "classes": self.corpus.classes}
        write_text_atomic(RunDir(run_dir).classification, json.dumps(payload, ensure_ascii=False) + "\n")


def saved_vocabulary(run_dir: Path) -> tuple[Vocab, int]:
    """A trained classifier's word vocabulary and number of classes (classification.json)."""
    saved = read_json(RunDir(run_dir).classification, missing=f"{run_dir}: not a classifier run")
    try:
        return Vocab.from_json(saved["words"]), int(saved["classes"])
    except (KeyError, TypeError, ValueError):
        raise RnnkitError(f"{RunDir(run_dir).classification}: not a classifier's vocabulary") from None


def corpus_for_run(run_dir: Path, data: str | Path) -> ClassifiedCorpus:
    """A trained classifier's vocabulary with the dev and test sentences of ``data``."""
    words, classes = saved_vocabulary(run_dir)
    corpus = load_classified(data, classes)
    return ClassifiedCorpus([], corpus.valid, corpus.test, words, classes)
