"""One training process per run directory: an advisory lock on ``RUN/.lock`` while training.

The lock is the operating system's (``flock``), so it dies with its process. Any exit
the process lives through (the end of training, an error, Ctrl-C) removes ``.lock``; a run
killed by SIGKILL or a power cut leaves a ``.lock`` file that nobody holds, which the next
``rnnkit train --resume`` recognises as stale, says so, and takes over. The file records
the holder's pid, host and start time for the message a second process gets. Where
``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any, TextIO

from rnnkit.errors import RnnkitError
from rnnkit.fileio import cannot_write
from rnnkit.training.rundir import RunDir

if sys.platform == "win32":  # pragma: no cover - no fcntl there
    fcntl = None
else:
    import fcntl


class RunLock:
    """``with RunLock(run_dir):`` — refuse (RnnkitError) when another process trains ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = RunDir(run_dir).lock
        self.file: TextIO | None = None  # open and locked while held
        self.stale: dict[str, Any] | None = None  # the record of a dead holder found on entry

    def __enter__(self) -> RunLock:
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self._acquired()
        while file is None:  # the holder removed the file we had opened as it finished: try the new one
            file = self._acquired()
        self.stale = self._holder(file)
        if self.stale:
            print(
                f"rnnkit: {self.path.parent}: a stale lock from pid {self.stale.get('pid')} "
                f"(since {self.stale.get('since')}) was found: that run was killed; taking over",
                file=sys.stderr,
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            file.seek(0)
            file.truncate()
            file.write(json.dumps(record) + "\n")
            file.flush()
        except OSError as err:  # a full disk: leave no lock behind, say which file
            self.__exit__()
            raise cannot_write(self.path, err, "training did not start") from None
        return self

    def _acquired(self) -> TextIO | None:
        """Lock ``.lock``: the open file when held; None when the file was replaced meanwhile."""
        file = self.path.open("a+", encoding="utf-8")
        self.file = file
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(file)
            file.close()
            self.file = None
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
                if holder
                else "another process"
            )
            raise RnnkitError(
                f"{self.path.parent}: another rnnkit train is using this run directory ({who}); "
                "wait for it to finish or stop it first"
            ) from None
        # Between our open and our flock the holder may have finished and removed the file:
        # a lock on a removed file guards nothing (the next trainer creates a new one).
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(file.fileno()), current):
            return file
        file.close()
        self.file = None
        return None

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            # Removed while still held, so that no one can lock the old file and take it
            # for the run's lock; whatever ended the run, it leaves no holder behind.
            self.path.unlink(missing_ok=True)
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    @staticmethod
    def _holder(file: TextIO) -> dict[str, Any] | None:
        """The record in the open ``.lock`` file; None when it is empty or not a JSON object."""
        try:
            file.seek(0)
            text = file.read().strip()
            record = json.loads(text) if text else None
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None
