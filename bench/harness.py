"""Side-by-side timing: interleaved repeats, median ratios with their spread, JSON out.

These machines are noisy (±13% run to run here), so every variant of a case is timed
in the same process, one block each per repeat (A B C A B C ...), and a ratio is the
median over repeats of the per-repeat ratio, reported with its min and max.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def usable(name: str) -> torch.device:
    """The device ``name``, or RuntimeError saying why it cannot be used here."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device in this torch build or machine")
    torch.empty(1, device=device)
    return device


def usable_or_skipped(name: str) -> torch.device | None:
    """The device ``name``, or None after printing why it is skipped (no figure for it)."""
    try:
        return usable(name)
    except RuntimeError as err:
        print(f"skipped: device {name!r} is not available ({err})")
        return None


def interleaved(
    variants: dict[str, Callable[[], None]],
    device: torch.device,
    repeats: int = 5,
    min_seconds: float = 0.5,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one value per repeat, variants interleaved.

    Each variant is warmed up, then calibrated to a block of calls lasting about
    ``min_seconds``; every repeat times one block of each variant in turn.
    """
    calls = {}
    for name, fn in variants.items():
        for _ in range(warmup):
            fn()
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        once = max(time.perf_counter() - start, 1e-6)
        calls[name] = max(1, round(min_seconds / once))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / calls[name])
    return times


def matmul_peak(
    device: torch.device, n: int = 1024, dtype: torch.dtype = torch.float32, repeats: int = 5
) -> float:
    """Best measured GFLOP/s of an n x n x n matrix product: the limit to compare against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    calls = 3 if device.type == "cpu" else 50
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        sync(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return 2 * n**3 / best / 1e9


def ratio(times: dict[str, list[float]], ours: str, base: str) -> dict[str, float]:
    """Speed of ``ours`` relative to ``base`` (>1: ours is faster): median, min, max."""
    per_repeat = [b / a for a, b in zip(times[ours], times[base])]
    return {"median": statistics.median(per_repeat), "min": min(per_repeat), "max": max(per_repeat)}


def machine(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def count(text: str) -> int:
    """An argument that must be a whole number from 1 to 10^6 (argparse's one-line error else)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 10**6:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000000, got {value}")
    return value
