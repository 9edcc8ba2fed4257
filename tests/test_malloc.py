"""The CLI's glibc settings: after them, freeing and reallocating a 40 MB buffer (a step's
logits are 28 MB for PTB's 10k words) no longer page-faults it in again; without them
(RNNKIT_MALLOC=default) glibc maps and unmaps it every time (its adaptive threshold stops at
32 MiB)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings: Linux only")

PROBE = """
import resource, sys
import torch
from rnnkit.cli import malloc
tuned = malloc.tune()
for _ in range(3):  # warm: the first allocation always faults
    torch.ones(10_000_000).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(10_000_000).sum()  # 40 MB allocated and freed
print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults(**env) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RNNKIT_MALLOC"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env}, check=True
    ).stdout.split()
    return out[0], float(out[1])


def test_tuned_malloc_stops_refaulting_step_sized_buffers():
    tuned, with_settings = faults()
    if int(tuned) < 64 << 20:
        pytest.skip(f"glibc took a threshold of {tuned} bytes: too low for this probe")
    untouched, without = faults(RNNKIT_MALLOC="default")
    assert untouched == "0"
    assert without > 5000  # 40 MB = ~9800 pages, faulted in again every time
    # Most reuses are free now; not all: where the heap cannot grow in one piece (address
    # space layout randomisation) glibc still maps some of it (measured: 0-40% of rounds).
    assert with_settings < without / 2


def test_a_users_own_malloc_setting_is_left_alone():
    tuned, _ = faults(MALLOC_ARENA_MAX="2")
    assert tuned == "0"
