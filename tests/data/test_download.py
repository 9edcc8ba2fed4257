"""Named corpora: download from a local HTTP server on 127.0.0.1, sha256 checks, the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rnnkit.data import download
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.errors import RnnkitError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    """A named corpus 'toy' of two files served from tmp_path/site/toy/."""
    site = tmp_path / "site" / "toy"
    site.mkdir(parents=True)
    files = {"train.txt": b"a b c\n", "valid.txt": b"b c\n"}
    for name, data in files.items():
        (site / name).write_bytes(data)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(download.NAMED, "toy", ("http://127.0.0.1:9/unused/{file}", hashes))
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "cache"))
    return site


def test_download_verify_and_reuse_the_cache(serve, fake_corpus, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, serve(fake_corpus.parent))
    directory = download.ensure("toy")
    assert (directory / "train.txt").read_bytes() == b"a b c\n"
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens there
    assert download.ensure("toy") == directory  # served from the cache, no download
    corpus = load_corpus(locate("toy"))
    assert corpus.vocab.decode(corpus.valid) == ["b", "c", "<eos>"]


def test_a_corrupted_download_is_rejected_and_not_cached(serve, fake_corpus, monkeypatch):
    (fake_corpus / "valid.txt").write_bytes(b"b c tampered\n")
    monkeypatch.setenv(download.MIRROR_ENV, serve(fake_corpus.parent))
    with pytest.raises(RnnkitError, match="sha256 mismatch"):
        download.ensure("toy")
    cached = download.data_home() / "toy"
    assert not (cached / "valid.txt").exists()
    assert not [p for p in cached.iterdir() if p.name.endswith(".part")]


def test_a_corrupted_cached_file_is_fetched_again(serve, fake_corpus, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, serve(fake_corpus.parent))
    directory = download.ensure("toy")
    (directory / "train.txt").write_bytes(b"garbage\n")
    download.ensure("toy")
    assert (directory / "train.txt").read_bytes() == b"a b c\n"


def test_unreachable_server_says_what_to_do(fake_corpus, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(RnnkitError, match=r"download failed.*RNNKIT_DATA_MIRROR"):
        download.ensure("toy", timeout=5)


@pytest.mark.skipif(not (SHARED / "tinyshakespeare").is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("name", sorted(download.NAMED))
def test_named_corpora_from_shared_data_match_their_hashes(serve, tmp_path, monkeypatch, name):
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(download.MIRROR_ENV, serve(SHARED))
    directory = download.ensure(name)
    assert sorted(p.name for p in directory.iterdir()) == sorted(download.NAMED[name][1])
