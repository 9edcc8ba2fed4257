"""Evaluation memory against the length of the evaluated text: the RSS slope should be ~0.

    python bench/eval_memory.py                       # 1M, 3M and 10M tokens, a small LSTM LM
    python bench/eval_memory.py --sizes 1e6 3e6 1e7 --json bench/out/eval-memory.json

Trains a small word LM (1k-word vocabulary, 1 epoch on generated text) into a temporary run
directory, writes test files of each size from the same vocabulary, and runs ``rnnkit
evaluate RUN --data DIR`` on each in a fresh process, which reports its own peak resident
memory (``VmHWM``) and wall time. The slope is fitted by least squares over the sizes
(bytes of peak RSS per million tokens); the evaluated text's own size is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import torch

import harness

PROBE = """
import re, sys, time
from rnnkit.cli.main import main
start = time.perf_counter()
code = main(["evaluate", sys.argv[1], "--data", sys.argv[2], "--json"])
# VmHWM, not ru_maxrss: Linux keeps the parent's ru_maxrss across fork and exec
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print("RSS", peak, time.perf_counter() - start, file=sys.stderr)
raise SystemExit(code)
"""


def write_text(path: Path, tokens: int, words: list[str], rng: np.random.Generator) -> None:
    """``tokens`` words (12 a line) drawn from ``words``, written in chunks."""
    with path.open("w") as f:
        left = tokens
        while left > 0:
            n = min(left, 1_200_000)
            ids = rng.integers(len(words), size=n)
            rows = [" ".join(words[i] for i in ids[k : k + 12]) for k in range(0, n, 12)]
            f.write("\n".join(rows) + "\n")
            left -= n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[1e6, 3e6, 1e7])
    p.add_argument("--json", default="bench/out/eval-memory.json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(1000)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        write_text(corpus / "train.txt", 20_000, words, rng)
        write_text(corpus / "valid.txt", 2_000, words, rng)
        run = root / "run"
        settings = ["--model.hidden_size=64", "--model.embed_size=64", "--train.epochs=1", "--no-progress"]
        subprocess.run(
            [sys.executable, "-m", "rnnkit", "train", "--data", str(corpus), "--out", str(run), *settings],
            check=True,
            capture_output=True,
        )
        for size in args.sizes:
            data = root / f"eval-{int(size)}"
            data.mkdir()
            for name in ("train.txt", "valid.txt"):
                (data / name).write_text((corpus / name).read_text())
            write_text(data / "test.txt", int(size), words, rng)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", PROBE, str(run), str(data)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            _, rss_kib, seconds = proc.stderr.strip().splitlines()[-1].split()
            figures = json.loads(proc.stdout)
            row = {
                "tokens": figures["tokens"],
                "text_mb": (data / "test.txt").stat().st_size / 1e6,
                "peak_rss_mb": int(rss_kib) / 1024,
                "seconds": float(seconds),
                "tokens_per_s": figures["tokens"] / float(seconds),
                "wall_s": time.perf_counter() - start,
            }
            rows.append(row)
            print(
                f"{row['tokens']:>10} tokens ({row['text_mb']:.0f} MB of text): "
                f"peak RSS {row['peak_rss_mb']:.0f} MB, {row['tokens_per_s']:.0f} tokens/s",
                flush=True,
            )
            (data / "test.txt").unlink()
    x = np.array([r["tokens"] for r in rows]) / 1e6
    y = np.array([r["peak_rss_mb"] for r in rows])
    slope = float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else float("nan")
    print(
        f"peak RSS slope: {slope:.2f} MB per million tokens "
        f"(the text itself: ~{rows[-1]['text_mb'] / x[-1]:.1f} MB per million)"
    )
    harness.write_json(
        args.json, {"machine": harness.machine(torch.device("cpu")), "rows": rows, "slope_mb_per_mtok": slope}
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
