"""glibc malloc settings for training processes, applied by the ``rnnkit`` command only.

By default glibc serves every allocation above a threshold (it adapts up to 32 MiB) with a
fresh ``mmap`` and gives freed heap tops back to the OS, so each training step's
activations, logits and gradients are page-faulted in anew: measured here, about 16-21k
minor page faults and 30-40 ms of system time per step of a 2x200 LSTM LM on PTB, 15-20%
of the step's CPU time (``bench/malloc.py``). Raising the mmap threshold to 64 MiB (32 MiB
where glibc caps it) and the trim threshold to 1 GiB keeps that memory in the process for
the next step: ~100 faults a step. The price: a process keeps up to 1 GiB of freed memory.

Set by :func:`tune` from the CLI entry point, never at import (a library must not change its
host's allocator); skipped when the user set any ``MALLOC_*`` variable or
``RNNKIT_MALLOC=default``, and on non-glibc systems.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MIB = 1 << 20


def tune() -> int:
    """Apply the settings; returns the mmap threshold glibc took (bytes), 0 when none were set."""
    if not sys.platform.startswith("linux") or os.environ.get("RNNKIT_MALLOC") == "default":
        return 0
    if any(name.startswith("MALLOC_") for name in os.environ):
        return 0  # the user chose their own
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return 0
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for threshold in (64 * MIB, 32 * MIB):
        if mallopt(M_MMAP_THRESHOLD, threshold):
            return threshold if mallopt(M_TRIM_THRESHOLD, 1024 * MIB) else 0
    return 0
