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


def make_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create the directory ``path`` (and its parents) if it is not there yet.

    Raises:
        RnnkitError: in one line naming ``what`` and the path, when it is a file, cannot be
            created (no permission, read-only or full disk, a path inside /proc, a symlink
            loop) or is not a directory.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RnnkitError(f"{what} {path}: exists and is not a directory") from None
    except OSError as err:
        raise RnnkitError(f"{what} {path}: cannot create the directory ({err.strerror})") from None
    if not path.is_dir():
        raise RnnkitError(f"{what} {path}: exists and is not a directory")
    return path


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


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new temporary file in ``path``'s directory, with the mode a plain ``open`` would give it.

    ``mkstemp`` creates its file 0600 whatever the umask; a file renamed into place from
    it would stay unreadable to a teammate or a web server. So the mode is set to
    0666 & ~umask, as ``open(path, "w")`` would have made it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` as :func:`write_text_atomic` writes text: temporary file, fsync, rename."""
    path = Path(path)
    fd, tmp = open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
