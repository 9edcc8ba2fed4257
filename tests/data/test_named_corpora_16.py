"""Issue 16, item 14: UD English EWT and SST are named corpora like ``ptb`` (downloaded once,
sha256-checked, cached; SST unpacked from its official zip), tested offline against a local
HTTP server; naming CoNLL-2003, which may not be redistributed, says how to obtain it."""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.data import download
from rnnkit.errors import RnnkitError
from rnnkit.tasks.classification import load_classified
from rnnkit.tasks.tagging import load_tagged

RNNKIT = Path(sys.executable).parent / "rnnkit"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SMALL = ["--model.hidden_size=8", "--model.embed_size=8", "--model.num_layers=1", "--no-progress"]
SMALL += ["--train.epochs=1", "--train.batch_size=8"]


def sst_tree(words: list[str], label: int) -> str:
    tree = f"(2 {words[-1]})"
    for w in reversed(words[:-1]):
        tree = f"({label} (2 {w}) {tree})"
    return tree


def toy_sst() -> dict[str, bytes]:
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 60), ("dev", 12), ("test", 12)):
        lines = []
        for _ in range(n):
            label = rng.choice([0, 1, 3, 4])
            words = [rng.choice(["the", "film", "was", "plot"]) for _ in range(3)]
            words.append("good" if label > 2 else "bad")
            lines.append(sst_tree(words, label))
        files[f"{split}.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def zipped(files: dict[str, bytes], folder: str = "trees/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(folder + name, data)
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, no mirror, and a working directory holding no corpus of those names."""
    monkeypatch.setenv(download.DATA_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path / "cache"


def fake_sst_release(site: Path, base: str, monkeypatch, files: dict[str, bytes], archive_hash=None):
    """Serve ``files`` as SST's zip (trees/*.txt) at ``base``, with NAMED['sst'] pointing at it."""
    archive = zipped(files)
    (site / "trainDevTestTrees_PTB.zip").write_bytes(archive)
    url = f"{base}/trainDevTestTrees_PTB.zip"
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(download.NAMED, "sst", (url + "#trees/{file}", hashes))
    monkeypatch.setitem(download.ARCHIVES, url, archive_hash or hashlib.sha256(archive).hexdigest())
    return url


def test_the_named_corpora_are_pinned_to_their_official_releases():
    ewt_url, ewt = download.NAMED["ud-english-ewt"]
    assert "UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/" in ewt_url
    assert set(ewt) == {f"en_ewt-ud-{s}.conllu" for s in ("train", "dev", "test")} | {"LICENSE.txt"}
    sst_url, sst = download.NAMED["sst"]
    assert sst_url == "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip#trees/{file}"
    assert set(sst) == {"train.txt", "dev.txt", "test.txt"}
    assert set(download.ARCHIVES) == {sst_url.partition("#")[0]}
    assert download.TASKS == {
        "ptb": "lm",
        "tinyshakespeare": "lm",
        "ud-english-ewt": "tag",
        "sst": "classify",
    }


def test_sst_is_unpacked_from_its_zip_once_and_then_read_from_the_cache(tmp_path, cache, serve, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    files = toy_sst()
    fake_sst_release(site, serve(site), monkeypatch, files)
    corpus = load_classified("sst", classes=2)
    assert sorted(p.name for p in (cache / "sst").iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    assert all((cache / "sst" / name).read_bytes() == data for name, data in files.items())
    assert len(corpus.train) == 60 and len(corpus.valid) == 12
    (site / "trainDevTestTrees_PTB.zip").unlink()  # no second download: the cache serves it
    assert len(load_classified("sst", classes=2).test) == 12


def test_a_tampered_archive_is_rejected_and_nothing_is_cached(tmp_path, cache, serve, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    fake_sst_release(site, serve(site), monkeypatch, toy_sst(), archive_hash="0" * 64)
    with pytest.raises(RnnkitError, match=r"trainDevTestTrees_PTB\.zip: sha256 mismatch"):
        download.ensure("sst")
    assert list((cache / "sst").iterdir()) == []  # neither the members nor the archive's .part


def test_a_member_that_does_not_match_is_rejected(tmp_path, cache, serve, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    url = fake_sst_release(site, serve(site), monkeypatch, toy_sst())
    hashes = dict(download.NAMED["sst"][1], **{"dev.txt": "f" * 64})
    monkeypatch.setitem(download.NAMED, "sst", (url + "#trees/{file}", hashes))
    with pytest.raises(RnnkitError, match=r"trainDevTestTrees_PTB.zip: trees/dev.txt: sha256 mismatch"):
        download.ensure("sst")
    assert not (cache / "sst" / "dev.txt").exists()
    assert not [p for p in (cache / "sst").iterdir() if p.name.startswith(".")]


def test_a_missing_member_says_so(tmp_path, cache, serve, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    url = fake_sst_release(site, serve(site), monkeypatch, toy_sst())
    hashes = dict(download.NAMED["sst"][1], **{"extra.txt": "f" * 64})
    monkeypatch.setitem(download.NAMED, "sst", (url + "#trees/{file}", hashes))
    with pytest.raises(RnnkitError, match=r"the archive has no trees/extra\.txt"):
        download.ensure("sst")


@pytest.mark.skipif(not (SHARED / "sst").is_dir(), reason="needs ../shared/data")
def test_the_real_sst_members_match_their_pinned_hashes(tmp_path, cache, serve, monkeypatch):
    """The official zip's layout (trees/NAME) rebuilt from shared/data: every member's sha256
    is the one pinned (the archive's own hash is the official zip's, which this is not)."""
    site = tmp_path / "site"
    site.mkdir()
    files = {name: (SHARED / "sst" / name).read_bytes() for name in ("train.txt", "dev.txt", "test.txt")}
    real = dict(download.NAMED["sst"][1])
    fake_sst_release(site, serve(site), monkeypatch, files)
    monkeypatch.setitem(download.NAMED, "sst", (download.NAMED["sst"][0], real))
    directory = download.ensure("sst")
    assert sorted(p.name for p in directory.iterdir()) == sorted(real)


def test_a_tagger_trains_on_the_named_treebank(tmp_path, cache, serve, monkeypatch, capsys):
    """``--data ud-english-ewt`` (a toy stand-in served by a mirror): downloaded into the
    cache, trained on, and found again by evaluate from the run's record."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    treebank = write_toy_treebank(mirror / "ud-english-ewt")
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in treebank.iterdir()}
    monkeypatch.setitem(download.NAMED, "ud-english-ewt", ("http://127.0.0.1:9/{file}", hashes))
    monkeypatch.setenv(download.MIRROR_ENV, serve(mirror))
    run = tmp_path / "run"
    assert main(["train", "--data", "ud-english-ewt", "--out", str(run), "--task=tag", *SMALL]) == 0
    assert sorted(p.name for p in (cache / "ud-english-ewt").iterdir()) == sorted(hashes)
    assert json.loads((run / "data.json").read_text())["data"] == "ud-english-ewt"
    capsys.readouterr()
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens: the cache must do
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert "test: accuracy" in capsys.readouterr().out
    assert len(load_tagged("ud-english-ewt").train) == 60


def test_a_classifier_trains_on_sst_and_evaluate_reports_averages(
    tmp_path, cache, serve, monkeypatch, capsys
):
    """``--data sst`` from the (toy) official zip; ``evaluate --report`` gives F1 in percent and
    the macro and weighted averages, ``--confusion`` writes the picture (issue 16, item 22)."""
    site = tmp_path / "site"
    site.mkdir()
    fake_sst_release(site, serve(site), monkeypatch, toy_sst())
    run = tmp_path / "run"
    args = ["train", "--data", "sst", "--out", str(run), "--task=classify", "--data.classes=2", *SMALL]
    assert main(args) == 0
    capsys.readouterr()
    png = tmp_path / "confusion.png"
    assert main(["evaluate", str(run), "--split", "test", "--report", "--confusion", str(png)]) == 0
    out = capsys.readouterr().out
    negative = next(line for line in out.splitlines() if line.strip().startswith("negative"))
    assert negative.count("%") == 3
    assert "   macro avg" in out and "weighted avg" in out and "    accuracy" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_corpus_for_another_task_is_refused_before_any_download(cache, monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9")  # a download would fail differently
    with pytest.raises(
        RnnkitError,
        match=r"sst is a corpus for task 'classify' \(--task=classify\), not 'tag'.*ud-english-ewt",
    ):
        load_tagged("sst")
    with pytest.raises(
        RnnkitError, match=r"ud-english-ewt is a corpus for task 'tag' \(--task=tag\), not 'classify'"
    ):
        load_classified("ud-english-ewt")
    with pytest.raises(RnnkitError, match="not 'lm'; named corpora for 'lm': ptb, tinyshakespeare"):
        download.resolve("sst", task="lm")
    assert not (cache / "sst").exists()


def test_conll2003_by_name_says_how_to_obtain_it(tmp_path):
    """The real console script, in a directory with no ``conll2003`` folder: one line, exit 2."""
    done = subprocess.run(
        [str(RNNKIT), "train", "--data", "conll2003", "--task=tag", "--out", str(tmp_path / "run")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"RNNKIT_DATA": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    for words in ("licence forbids redistribution", "NIST", "eng.train", "eng.testa", "eng.testb", "IOB1"):
        assert words in done.stderr
    assert not (tmp_path / "cache").exists()
