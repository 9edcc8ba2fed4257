"""Files in and out: strict UTF-8 reading with exact error positions, atomic writes that fail in one line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from rnnkit.errors import RnnkitError


class WriteError(RnnkitError):
    """A file could not be written (disk full, read-only file system, no permission, quota):
    one line naming the file, the reason and what is left intact.

    Args:
        message: the whole line.
        path: the file that could not be written.
        reason: the system's words for why (``No space left on device``).
    """

    def __init__(self, message: str, path: Path, reason: str) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason

    def adding(self, note: str) -> WriteError:
        """The same error with ``note`` (more of what is intact, or what stopped) after it."""
        return WriteError(f"{self}; {note}", self.path, self.reason)


def stopped_writing(err: WriteError, out: Path, names: Iterable[str], what: str) -> WriteError:
    """``err`` (a file of ``names`` that could not be written to ``out``), with which of them
    this call did write before it: an earlier call's were removed first, so these are all
    ``out`` holds of them."""
    there = [name for name in names if (out / name).is_file()]
    return err.adding(
        f"{what} stopped there, having written {', '.join(there) if there else 'none of its files'}"
    )


def reason(err: OSError) -> str:
    """Why ``err`` happened, in the system's words (``No space left on device``)."""
    return err.strerror or str(err)


def cannot_write(path: Path, err: OSError, intact: str) -> WriteError:
    """The one-line error for ``path`` not written because of ``err``; ``intact`` says what is
    left as it was."""
    return WriteError(f"{path}: cannot write it ({reason(err)}); {intact}", path, reason(err))


def _unreadable(path: Path, what: str, err: OSError) -> RnnkitError:
    if isinstance(err, FileNotFoundError):
        return RnnkitError(f"{path}: no such {what}")
    if isinstance(err, IsADirectoryError):
        return RnnkitError(f"{path}: is a directory, expected a {what}")
    return RnnkitError(f"{path}: cannot read the {what} ({err.strerror})")


def open_binary(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """``path`` opened for reading bytes; a missing, unreadable or directory path is one line
    naming it as ``what``."""
    path = Path(path)
    try:
        return path.open("rb")
    except OSError as err:
        raise _unreadable(path, what, err) from None


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
    except RecursionError:  # json's parser recurses once per nested bracket
        raise RnnkitError(f"{path}: corrupted {what} (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: corrupted {what} ({err})") from None


def make_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create the directory ``path`` (and its parents) if it is not there yet.

    The directory is also tried with an empty file (removed at once), so that a read-only
    file system or a directory without write permission is refused before minutes of work,
    not after.

    Raises:
        RnnkitError: in one line naming ``what`` and the path, when it is a file, cannot be
            created (no permission, read-only or full disk, a path inside /proc, a symlink
            loop), is not a directory, or no file can be created in it.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RnnkitError(f"{what} {path}: exists and is not a directory") from None
    except OSError as err:
        raise RnnkitError(f"{what} {path}: cannot create the directory ({reason(err)})") from None
    if not path.is_dir():
        raise RnnkitError(f"{what} {path}: exists and is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".rnnkit-", suffix=".tmp")
    except OSError as err:
        raise RnnkitError(f"{what} {path}: cannot write in this directory ({reason(err)})") from None
    os.close(fd)
    _remove_temp(probe)
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

    Raises:
        WriteError: the file could not be written (a full disk, a read-only file system, no
            permission): the temporary file is removed and the previous file, if any, is
            unchanged; the message says which.
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
    """Write ``data`` as :func:`write_text_atomic` writes text: temporary file, fsync, rename.

    Raises:
        WriteError: as :func:`write_text_atomic`.
    """
    path = Path(path)
    existed = path.is_file()
    tmp = None
    try:
        fd, tmp = open_temp_beside(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove_temp(tmp)
        intact = f"the previous {path.name} is unchanged" if existed else f"no {path.name} was written"
        raise cannot_write(path, err, intact) from None
    except BaseException:
        _remove_temp(tmp)
        raise


def _remove_temp(tmp: str | None) -> None:
    """Remove a temporary file a failed write left (quietly: the write's error is the news)."""
    if tmp is not None:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
