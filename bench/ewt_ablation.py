"""The lecture's claims about bidirectional, deep and gated RNNs as numbers: an EWT UPOS ablation.

One base tagger (the ``ewt-upos`` preset without its character feature: the ablation is
about the recurrent part) and one change at a time, every run with the same epoch budget,
seed and data; each is selected on dev and tested once. Runs one after another, each
through the ``rnnkit train`` command, and writes ``bench/results/ewt-ablation.json`` and a
markdown table.

    python bench/ewt_ablation.py --data ../shared/data/ud-english-ewt --epochs 6
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

BASE = ["--config", "ewt-upos", "--model.char_embed=0"]
VARIANTS = {  # name -> the one setting that differs from the base (a 2-layer BiLSTM)
    "base: BiLSTM 2 layers": [],
    "unidirectional": ["--model.bidirectional=false"],
    "1 layer": ["--model.num_layers=1"],
    "3 layers": ["--model.num_layers=3"],
    "Elman (tanh)": ["--model.cell=elman"],
    "GRU": ["--model.cell=gru"],
    # after the lecture (issue 22): the same tagger with each newer cell
    "LayerNorm LSTM": ["--model.cell=lnlstm"],
    "minGRU": ["--model.cell=mingru"],
    "minLSTM": ["--model.cell=minlstm"],
    "sLSTM": ["--model.cell=slstm"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ud-english-ewt")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default="runs/ewt-ablation", help="where the run directories go")
    parser.add_argument("--out", default="bench/results/ewt-ablation.json")
    parser.add_argument("--only", nargs="*", help="run only these variants (names as in the table)")
    args = parser.parse_args()
    common = [f"--train.epochs={args.epochs}", f"--train.seed={args.seed}", f"--train.threads={args.threads}"]
    out = Path(args.out)
    results = json.loads(out.read_text())["runs"] if out.exists() else {}
    for name, change in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        run = Path(args.runs) / name.split(":")[0].replace(" ", "-").replace("(", "").replace(")", "")
        command = [sys.executable, "-m", "rnnkit", "train", "--data", args.data, "--out", str(run)]
        command += [*BASE, *change, *common, "--no-progress", "--json"]
        print(f"{name}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        if (run / "summary.json").exists():  # finished before (this script was restarted): keep it
            summary = json.loads((run / "summary.json").read_text())
            start -= (run / "summary.json").stat().st_mtime - (run / "config.json").stat().st_mtime
        else:
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        epochs = [r for r in rows if "epoch" in r]
        finished = (run / "summary.json").stat().st_mtime
        results[name] = {
            "date": time.strftime("%Y-%m-%d", time.gmtime(finished)),  # this run's, in UTC
            "change": change,
            "run": str(run),
            "wall_s": time.perf_counter() - start,
            "parameters": _parameters(run),
            "dev_by_epoch": [r["valid_accuracy"] for r in epochs],
            "summary": summary,
        }
        print(_line(name, results[name]), file=sys.stderr, flush=True)
        _write(out, args, results)
    print(table(results))
    return 0


def _parameters(run: Path) -> int:
    from safetensors import safe_open

    record = json.loads((run / "best" / "checkpoint.json").read_text())
    with safe_open(str(run / "best" / record["weights"]), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (not iterable)


def _line(name: str, r: dict) -> str:
    s = r["summary"]
    return (
        f"{name}: dev {100 * s['best_valid']['accuracy']:.2f}%, test {100 * s['test']['accuracy']:.2f}%, "
        f"{r['wall_s'] / 60:.1f} min"
    )


def table(results: dict) -> str:
    lines = [
        "| variant | parameters | dev by epoch | best dev | test | wall |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        s = r["summary"]
        lines.append(
            f"| {name} | {r['parameters'] / 1e6:.2f} M | "
            + ", ".join(f"{100 * a:.1f}" for a in r["dev_by_epoch"])
            + f" | {100 * s['best_valid']['accuracy']:.2f}% | **{100 * s['test']['accuracy']:.2f}%** "
            f"| {r['wall_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def _write(out: Path, args: argparse.Namespace, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "what": "UD English EWT UPOS ablation: one factor at a time from one base tagger, fixed epoch budget",
        "command": (
            f"python bench/ewt_ablation.py --data {args.data} --epochs {args.epochs} --seed {args.seed}"
        ),
        "base": " ".join(BASE),
        "epochs": args.epochs,
        "seed": args.seed,
        "machine": f"{platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
        f"{args.threads} thread(s)",
        "updated": time.strftime("%Y-%m-%d", time.gmtime()),  # each run has its own date
        "runs": results,
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    raise SystemExit(main())
