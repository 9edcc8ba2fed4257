"""``rnnkit score`` on texts of growing size: throughput and peak memory (issue 8, load).

Trains a word LSTM (``--hidden``, ``--layers``; or takes ``--run``), writes texts of the
given sizes (random lines of the run's own words, 5-40 words a line), and scores each in a
fresh process (``rnnkit score RUN FILE --json``, output discarded), reading that process's
peak RSS from inside it. Memory is flat in the text's length when the peak does not grow
with the size.

    python bench/score_stream.py --sizes 1,10,100 --hidden 64 --layers 1   # the long variant
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import re, sys, time
from rnnkit.cli.main import main
start = time.perf_counter()
code = main(sys.argv[1:])
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps the parent's ru_maxrss across fork and exec
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(f"PEAK {peak} SECONDS {seconds}", file=sys.stderr)
raise SystemExit(code)
"""


def rnnkit(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def train_run(root: Path, hidden: int, layers: int) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(2000)]
    for split, n in (("train", 20000), ("valid", 1000)):
        lines = (" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) for _ in range(n))
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    run = root / "run"
    settings = ["--model.cell=lstm", f"--model.hidden_size={hidden}", f"--model.embed_size={hidden}"]
    settings += [f"--model.num_layers={layers}", "--train.epochs=1", "--train.threads=1", "--no-progress"]
    proc = rnnkit("train", "--data", str(root), "--out", str(run), *settings)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return run


def write_text(path: Path, megabytes: float, words: list[str]) -> int:
    rng = random.Random(1)
    target, size, lines = int(megabytes * 1e6), 0, 0
    with path.open("w") as f:
        while size < target:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + "\n"
            f.write(line)
            size += len(line)
            lines += 1
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="an LM run directory (default: train an LSTM on random words)")
    p.add_argument("--hidden", type=int, default=200, help="the trained LSTM's size (default: 200)")
    p.add_argument("--layers", type=int, default=2, help="the trained LSTM's layers (default: 2)")
    p.add_argument("--sizes", default="1,4,16", help="megabytes of text, comma-separated (default: 1,4,16)")
    p.add_argument("--batch-sizes", default="64", help="--batch-size values to compare (default: 64)")
    p.add_argument("--out", default="bench/out/score-stream.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = Path(args.run) if args.run else train_run(root, args.hidden, args.layers)
        words = json.loads((run / "vocab.json").read_text())
        words = [w for w in (words["tokens"] if isinstance(words, dict) else words) if not w.startswith("<")]
        rows = []
        for mb in [float(s) for s in args.sizes.split(",")]:
            text = root / f"text-{mb}.txt"
            lines = write_text(text, mb, words)
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                proc = rnnkit("score", str(run), str(text), "--json", "--batch-size", str(batch))
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-2000:])
                tail = proc.stderr.strip().splitlines()
                peak = int(tail[-1].split()[1]) / 1024
                report = next(line for line in tail if line.startswith("rnnkit score:"))
                tokens = int(report.split(" lines, ")[1].split()[0])
                seconds = float(tail[-1].split()[3])
                row = {
                    "megabytes": mb,
                    "lines": lines,
                    "tokens": tokens,
                    "batch_size": batch,
                    "seconds": seconds,
                    "lines_per_s": lines / seconds,
                    "tokens_per_s": tokens / seconds,
                    "peak_rss_mib": peak,
                }
                rows.append(row)
                print(
                    f"{mb:7.1f} MB  {lines:9d} lines  batch {batch:3d}  {row['lines_per_s']:8.0f} lines/s  "
                    f"{row['tokens_per_s']:9.0f} tokens/s  peak RSS {peak:7.1f} MiB",
                    flush=True,
                )
            text.unlink()
    result = {
        "what": "rnnkit score streaming: throughput and peak RSS by text size",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python bench/score_stream.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
