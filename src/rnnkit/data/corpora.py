"""Text corpora for language models: where the files are, how text becomes tokens and ids."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.data import download
from rnnkit.data.text import DEFAULT_BPE_SIZE, Codec
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_text

LAYOUTS = (
    ("train.txt", "valid.txt", "test.txt"),
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
)

TASK = "lm"
"""The task (:data:`rnnkit.tasks.TASKS`) these corpora are for: :func:`locate` resolves and
names only its named corpora (:data:`rnnkit.data.download.TASKS`)."""


@dataclass(frozen=True)
class CorpusFiles:
    """Where a corpus's splits are. With ``valid_fraction``, ``train`` is one file whose
    last fraction of tokens is the validation split (and there is no test split)."""

    train: Path
    valid: Path | None = None
    test: Path | None = None
    valid_fraction: float | None = None


def locate(
    data: str | Path | None = None,
    train: str | Path | None = None,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    valid_fraction: float = 0.1,
) -> CorpusFiles:
    """Find a corpus's files.

    ``data`` is a directory in one of :data:`LAYOUTS`, a directory holding a single text
    file, a single file (split: its last ``valid_fraction`` of tokens is the validation
    split, as nanoGPT splits Tiny Shakespeare), or a named language-modelling corpus
    (:data:`rnnkit.data.download.NAMED`: downloaded and verified when missing). Or give
    ``train`` (and ``valid``, ``test``) files explicitly.
    """
    if train is not None:
        files = CorpusFiles(Path(train), _opt(valid), _opt(test))
        for p in (files.train, files.valid, files.test):
            if p is not None and not p.is_file():
                raise RnnkitError(f"{p}: no such corpus file")
        return files
    if data is None:
        raise RnnkitError("no corpus given: pass --data DIR_OR_NAME or --train FILE")
    path = download.resolve(data, task=TASK)
    if path.is_file():
        return _single(path, valid_fraction)
    if not path.is_dir():
        named = ", ".join(n for n in sorted(download.NAMED) if download.TASKS.get(n) == TASK)
        raise RnnkitError(f"{data}: no such corpus directory or file, and not a named corpus ({named})")
    for names in LAYOUTS:
        if (path / names[0]).is_file():
            splits = [path / n if (path / n).is_file() else None for n in names]
            return CorpusFiles(splits[0], splits[1], splits[2])
    texts = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix in (".txt", ".tokens")]
    if len(texts) == 1:
        return _single(texts[0], valid_fraction)
    expected = "; ".join("/".join(names) for names in LAYOUTS)
    raise RnnkitError(f"{path}: no corpus layout found (expected one of: {expected}; or a single .txt file)")


def _opt(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)


def _single(path: Path, valid_fraction: float) -> CorpusFiles:
    if not 0.0 < valid_fraction < 1.0:
        raise RnnkitError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    return CorpusFiles(path, valid_fraction=valid_fraction)


MAX_SIZE = 300_000
"""The vocabulary size (specials included) of a word, symbol or character corpus when
``data.max_size`` is none: more than any corpus in common use (PTB 10k types, WikiText-103
267,735, text8 253,854), so none is cut, while text of a million distinct junk types no
longer builds a million-row embedding and softmax."""

MAX_UNKNOWN = 0.5
"""Above this share of tokens missing from a run's vocabulary, the text is not its kind."""


def check_known(vocab: Vocab, unknown: int, total: int, path: Path | str) -> None:
    """Refuse text most of whose tokens a run's vocabulary has never seen."""
    if total and unknown / total > MAX_UNKNOWN:
        raise RnnkitError(
            f"{path}: {unknown / total:.0%} of its {total} tokens are not in the run's vocabulary of "
            f"{len(vocab)}: the data does not match the vocabulary (another corpus or level?)"
        )


@dataclass
class Corpus:
    """Token ids of each split (1-D int64 streams), the vocabulary and codec built on train."""

    vocab: Vocab
    codec: Codec
    train: torch.Tensor
    valid: torch.Tensor | None
    test: torch.Tensor | None


def load_corpus(
    files: CorpusFiles,
    level: str = "word",
    min_freq: int = 1,
    max_size: int | None = None,
    vocab: Vocab | None = None,
    codec: Codec | None = None,
) -> Corpus:
    """Read and tokenize every split; build the codec and vocabulary on train unless given.

    Tokens not in the vocabulary become ``<unk>``. In ``char`` corpora the vocabulary's
    only special token is ``<unk>``; in ``word``/``symbol`` corpora ``<unk>`` and ``<eos>``;
    a ``bpe`` vocabulary is the tokenizer's, learned on train up to ``max_size`` tokens
    (default 8192) from pairs seen at least ``min_freq`` times (at least 2), and has none.
    A single file is split by characters for ``bpe`` (the tokenizer must not see the
    validation text) and by tokens otherwise. Other levels keep at most ``max_size``
    tokens (default :data:`MAX_SIZE`); when that leaves types out, one warning says how
    many and what share of the training tokens they were (they become ``<unk>``).
    """
    text = read_text(files.train, "corpus file")
    valid_text = test_text = None
    if files.valid_fraction is not None and level == "bpe":
        cut = int(len(text) * (1 - files.valid_fraction))
        text, valid_text = text[:cut], text[cut:]
    else:
        if files.valid is not None:
            valid_text = read_text(files.valid, "corpus file")
        if files.test is not None:
            test_text = read_text(files.test, "corpus file")
    if codec is None:
        if level == "bpe":
            size = DEFAULT_BPE_SIZE if max_size is None else max_size
            codec = Codec.train_bpe(text.splitlines(keepends=True), size, max(min_freq, 2))
        else:
            codec = Codec(level)
    train_tokens = codec.corpus_tokens(text)
    valid_tokens = None if valid_text is None else codec.corpus_tokens(valid_text)
    test_tokens = None if test_text is None else codec.corpus_tokens(test_text)
    if files.valid_fraction is not None and level != "bpe":
        cut = int(len(train_tokens) * (1 - files.valid_fraction))
        train_tokens, valid_tokens = train_tokens[:cut], train_tokens[cut:]
    if files.valid_fraction is not None and not (train_tokens and valid_tokens):
        raise RnnkitError(f"{files.train}: too short to split off {files.valid_fraction:.0%} for validation")
    if not train_tokens:
        raise RnnkitError(f"{files.train}: no tokens in the corpus file")
    if vocab is not None:  # a trained run's vocabulary: the text must be the kind it was built on
        for tokens, path in (
            (train_tokens, files.train),
            (valid_tokens, files.valid),
            (test_tokens, files.test),
        ):
            check_known(
                vocab, sum(t not in vocab for t in tokens or ()), len(tokens or ()), path or files.train
            )
    if vocab is None:
        if level == "bpe":
            vocab = Vocab(sorted(codec.tokenizer.get_vocab(), key=codec.tokenizer.token_to_id), unk=None)
        else:
            specials = (UNK,) if level == "char" else (UNK, EOS)
            size = MAX_SIZE if max_size is None else max_size
            vocab = Vocab.build(train_tokens, min_freq=min_freq, max_size=size, specials=specials)
            if vocab.cut is not None:
                print(
                    f"rnnkit: warning: {files.train}: the vocabulary is cut to data.max_size = {size} "
                    f"tokens: the rarest {vocab.cut} are left out, read as {UNK}",
                    file=sys.stderr,
                )
    return Corpus(
        vocab=vocab,
        codec=codec,
        train=vocab.encode(train_tokens),
        valid=None if valid_tokens is None else vocab.encode(valid_tokens),
        test=None if test_tokens is None else vocab.encode(test_tokens),
    )
