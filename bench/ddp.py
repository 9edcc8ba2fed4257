"""Data-parallel speed on this machine: 2 processes x 1 thread against 1 process x 1 thread
(the scaling figure) and against 1 process x 2 threads (what a user here would otherwise run).

    python bench/ddp.py                         # PTB from ../shared/data, Zaremba-small shape
    python bench/ddp.py --tokens 200000 --repeats 3

Each variant is one ``rnnkit train`` epoch over the first ``--tokens`` training tokens of
PTB (a copy in a temporary directory), the same global batch (``--batch`` columns, 20 by
default) and bptt; the figure is the epoch's training tokens/s as the run logs it (summed
over ranks). Variants run in turn (A B C A B C ...) and the ratios are medians over the
repeats with their spread. Writes JSON (default ``bench/out/ddp.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch

import harness

SHAPE = ["--model.cell=lstm", "--model.hidden_size=200", "--model.embed_size=200", "--model.num_layers=2"]
SHAPE += ["--train.lr=20", "--train.clip_norm=0.25", "--train.bptt=20"]
VARIANTS = {  # name -> (extra rnnkit arguments, OMP threads per process)
    "1 process x 1 thread": (["--train.threads=1"], "1"),
    "2 processes x 1 thread": (["--nproc", "2", "--train.threads=1"], "1"),
    "1 process x 2 threads": (["--train.threads=2"], "2"),
}


def one_run(data: Path, out: Path, extra: list[str], threads: str, batch: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    command = [sys.executable, "-m", "rnnkit", "train", "--data", str(data), "--out", str(out)]
    command += [*SHAPE, f"--train.batch_size={batch}", "--train.epochs=1", "--no-progress", *extra]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r["tokens_per_s"] for r in rows if "epoch" in r)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/ptb")
    p.add_argument("--tokens", type=int, default=150_000, help="training tokens per epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=20, help="global batch (columns), shared by the processes")
    p.add_argument("--json", default="bench/out/ddp.json")
    args = p.parse_args()
    source = Path(args.data)
    if not (source / "ptb.train.txt").exists():
        print(f"skipped: no PTB at {source}")
        return 0
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ptb"
        data.mkdir()
        words, lines = 0, []
        for line in (source / "ptb.train.txt").read_text().splitlines():
            lines.append(line)
            words += len(line.split()) + 1
            if words >= args.tokens:
                break
        (data / "train.txt").write_text("\n".join(lines) + "\n")
        (data / "valid.txt").write_text(
            "\n".join((source / "ptb.valid.txt").read_text().splitlines()[:200]) + "\n"
        )
        for repeat in range(args.repeats):
            for name, (extra, threads) in VARIANTS.items():
                run_dir = Path(tmp) / f"run-{repeat}-{name.replace(' ', '')}"
                speed = one_run(data, run_dir, extra, threads, args.batch)
                speeds[name].append(speed)
                print(f"repeat {repeat + 1}: {name}: {speed:.0f} tokens/s", flush=True)
    base = "1 process x 1 thread"
    rows = []
    print("\n| variant | tokens/s (median) | vs 1 process x 1 thread |\n| --- | ---: | ---: |")
    for name, values in speeds.items():
        ratios = [v / b for v, b in zip(values, speeds[base])]
        row = {
            "variant": name,
            "tokens_per_s": values,
            "median": statistics.median(values),
            "ratio_vs_one_thread": {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            },
        }
        rows.append(row)
        r = row["ratio_vs_one_thread"]
        print(f"| {name} | {row['median']:.0f} | {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}] |")
    payload = {
        "machine": harness.machine(torch.device("cpu")),
        "tokens": args.tokens,
        "shape": SHAPE,
        "rows": rows,
    }
    harness.write_json(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
