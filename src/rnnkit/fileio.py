"""Files in and out: strict UTF-8 reading with exact error positions, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rnnkit.errors import RnnkitError


def _unreadable(path: Path, what: str, err: OSError) -> RnnkitError:
    if isinstance(err, FileNotFoundError):
        return RnnkitError(f"{path}: no such {what}")
    if isinstance(err, IsADirectoryError):
        return RnnkitError(f"{path}: is a directory, expected a {what}")
    return RnnkitError(f"{path}: cannot read the {what} ({err.strerror})")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The whole file as text, decoded as strict UTF-8.

    Raises:
        RnnkitError: the file is missing, not a file, empty, or not UTF-8 (naming the
            line and the byte offset of the first bad byte).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise _unreadable(path, what, err) from None
    if not data.strip():
        raise RnnkitError(f"{path}: the {what} is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise RnnkitError(
            f"{path}: line {line}, byte offset {err.start}: not UTF-8 (byte 0x{data[err.start]:02x})"
        ) from None


def iter_lines(path: str | os.PathLike, what: str = "file", start: int = 0) -> Iterator[tuple[int, str]]:
    """The file's lines (each with its ``\\n``) and their byte offsets, as strict UTF-8.

    One line at a time from byte offset ``start`` (a line start): constant memory
    whatever the file's size. Raises like :func:`read_text`, naming the line (counted
    from ``start``) and byte offset of the first byte that is not UTF-8.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise _unreadable(path, what, err) from None
    with handle:
        handle.seek(start)
        offset = start
        for number, raw in enumerate(handle, 1):
            try:
                yield offset, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RnnkitError(
                    f"{path}: line {number}, byte offset {offset + err.start}: not UTF-8 "
                    f"(byte 0x{raw[err.start]:02x})"
                ) from None
            offset += len(raw)


def read_json(path: str | os.PathLike, missing: str, what: str = "JSON file"):
    """Parse a JSON file; a missing file raises ``missing``, a broken one names the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise RnnkitError(missing) from None
    except OSError as err:
        raise _unreadable(path, what, err) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: corrupted {what} ({err})") from None


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A crash or Ctrl-C at any moment leaves either the old file or the new one, never
    half of one.
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
