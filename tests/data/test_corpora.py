"""Corpus layouts, tokenization levels, splits and the errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.text import Codec
from rnnkit.data.vocab import EOS, UNK
from rnnkit.errors import RnnkitError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_tokenize_levels():
    assert Codec("word").corpus_tokens(" a b \n c\n") == ["a", "b", EOS, "c", EOS]
    assert Codec("symbol").corpus_tokens("a _ b\n") == ["a", "_", "b", EOS]
    assert Codec("char").corpus_tokens("ab\nc") == ["a", "b", "\n", "c"]
    with pytest.raises(RnnkitError, match="level"):
        Codec("bytes")


@pytest.mark.parametrize(
    "names",
    [
        ("train.txt", "valid.txt", "test.txt"),
        ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
        ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ],
)
def test_directory_layouts(tmp_path, names):
    for name, text in zip(names, ("a b a\n", "b a\n", "a c\n")):
        (tmp_path / name).write_text(text)
    corpus = load_corpus(locate(tmp_path))
    assert corpus.vocab.tokens == [UNK, EOS, "a", "b"]
    assert corpus.vocab.decode(corpus.test) == ["a", UNK, EOS]
    assert corpus.train.tolist() == [2, 3, 2, 1]


def test_explicit_files(tmp_path):
    (tmp_path / "t").write_text("x y\n")
    (tmp_path / "v").write_text("y\n")
    files = locate(train=tmp_path / "t", valid=tmp_path / "v")
    corpus = load_corpus(files)
    assert corpus.test is None and corpus.vocab.decode(corpus.valid) == ["y", EOS]


def test_single_file_split_is_nanogpts(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    (tmp_path / "input.txt").write_text(text)
    corpus = load_corpus(locate(tmp_path), level="char")
    n = len(text)
    assert corpus.vocab.decode(corpus.train) == list(text[: int(n * 0.9)])
    assert corpus.vocab.decode(corpus.valid) == list(text[int(n * 0.9) :])
    assert corpus.test is None


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: None, "no corpus layout"),
        (lambda d: (d / "train.txt").write_text(""), "is empty"),
        (lambda d: (d / "train.txt").write_bytes(b"ok line\nbad \xff byte\n"), r"line 2, byte offset 12"),
    ],
)
def test_bad_corpora(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(RnnkitError, match=match):
        load_corpus(locate(tmp_path))


def test_missing_path_is_named(tmp_path):
    with pytest.raises(RnnkitError, match="no such corpus"):
        locate(tmp_path / "missing")
    with pytest.raises(RnnkitError, match="no such corpus file"):
        locate(train=tmp_path / "missing.txt")


@pytest.mark.skipif(not (SHARED / "ptb").is_dir(), reason="needs ../shared/data/ptb")
def test_real_ptb_counts_match_its_readme():
    corpus = load_corpus(locate(SHARED / "ptb"))
    assert len(corpus.vocab) == 10_000
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (929_589, 73_760, 82_430)
    assert (corpus.valid == corpus.vocab.index(UNK)).sum().item() == 3_485
