"""Record a finished training run as a results JSON (+ its learning curve) for bench/RESULTS.md.

    python bench/record_run.py runs/sst2-s0 bench/results/classify-sst2-s0.json \
        --what "SST-2 BiLSTM ..." --command "rnnkit train ..." --machine "2-core CPU, 1 thread"

Takes the run's summary, resolved config and per-epoch validation figures, and its wall
time from the run's own files (config written -> summary written).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--what", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument(
        "--machine", default="2-core AMD EPYC VM, torch 2.13.0+cpu, 1 thread (other runs beside)"
    )
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    config = json.loads((args.run / "config.json").read_text())
    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    start, end = ((args.run / name).stat().st_mtime for name in ("config.json", "summary.json"))

    def utc(t: float) -> str:
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")

    record = {
        "what": args.what,
        "command": args.command,
        "machine": args.machine,
        "seed": config["train"]["seed"],
        "wall": f"{utc(start)}-{utc(end)[-5:]} UTC",
        "wall_min": round((end - start) / 60, 1),
        "summary": summary,
        "config": config,
        "epochs": [
            {k: v for k, v in r.items() if k.startswith("valid_") or k in ("epoch", "step", "lr")}
            for r in rows
            if "epoch" in r
        ],
        "checks": [
            {k: v for k, v in r.items() if k.startswith("valid_") or k == "step"}
            for r in rows
            if "check" in r
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    if (args.run / "learning_curve.png").exists():
        shutil.copyfile(args.run / "learning_curve.png", args.out.with_suffix(".png"))
    print(f"{args.out}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
