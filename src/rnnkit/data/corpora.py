"""Text corpora for language models: where the files are, how text becomes tokens and ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.data import download
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_text

LEVELS = ("word", "char", "symbol")
"""``word``: whitespace-separated tokens and an ``<eos>`` after every line (PTB, WikiText);
``symbol``: the same, for corpora whose tokens are characters written with spaces between
them (PTB-char, where ``_`` marks word boundaries; report bits per symbol); ``char``:
every character of the raw text, newlines included (Tiny Shakespeare)."""

LAYOUTS = (
    ("train.txt", "valid.txt", "test.txt"),
    ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
)


def tokenize(text: str, level: str) -> list[str]:
    """Split ``text`` into tokens at ``level`` (see :data:`LEVELS`)."""
    if level == "char":
        return list(text)
    if level in ("word", "symbol"):
        tokens: list[str] = []
        for line in text.splitlines():
            tokens.extend(line.split())
            tokens.append(EOS)
        return tokens
    raise RnnkitError(f"level must be one of {list(LEVELS)}, got {level!r}")


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
    split, as nanoGPT splits Tiny Shakespeare), or a named corpus
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
    path = Path(data)
    if not path.exists() and str(data) in download.NAMED:
        path = download.ensure(str(data))
    if path.is_file():
        return _single(path, valid_fraction)
    if not path.is_dir():
        named = ", ".join(sorted(download.NAMED))
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


@dataclass
class Corpus:
    """Token ids of each split (1-D int64 streams) and the vocabulary built on train."""

    vocab: Vocab
    level: str
    train: torch.Tensor
    valid: torch.Tensor | None
    test: torch.Tensor | None


def load_corpus(
    files: CorpusFiles,
    level: str = "word",
    min_freq: int = 1,
    max_size: int | None = None,
    vocab: Vocab | None = None,
) -> Corpus:
    """Read and tokenize every split; build the vocabulary on train unless one is given.

    Tokens not in the vocabulary become ``<unk>``. In ``char`` corpora the vocabulary's
    only special token is ``<unk>``; in ``word``/``symbol`` corpora ``<unk>`` and ``<eos>``.
    """
    train_tokens = tokenize(read_text(files.train, "corpus file"), level)
    valid_tokens = test_tokens = None
    if files.valid_fraction is not None:
        cut = int(len(train_tokens) * (1 - files.valid_fraction))
        train_tokens, valid_tokens = train_tokens[:cut], train_tokens[cut:]
        if not train_tokens or not valid_tokens:
            raise RnnkitError(
                f"{files.train}: too short to split off {files.valid_fraction:.0%} for validation"
            )
    else:
        if files.valid is not None:
            valid_tokens = tokenize(read_text(files.valid, "corpus file"), level)
        if files.test is not None:
            test_tokens = tokenize(read_text(files.test, "corpus file"), level)
    if vocab is None:
        specials = (UNK,) if level == "char" else (UNK, EOS)
        vocab = Vocab.build(train_tokens, min_freq=min_freq, max_size=max_size, specials=specials)
    return Corpus(
        vocab=vocab,
        level=level,
        train=vocab.encode(train_tokens),
        valid=None if valid_tokens is None else vocab.encode(valid_tokens),
        test=None if test_tokens is None else vocab.encode(test_tokens),
    )
