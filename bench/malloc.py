"""Page faults and system time per LM training step, glibc's default malloc against rnnkit's
settings (``rnnkit.cli.malloc``), each in fresh processes, interleaved.

    python bench/malloc.py                      # 2x200 LSTM, PTB, batch 20 x bptt 35, 1 thread
    python bench/malloc.py --hidden 650 --repeats 5

Each process trains rnnkit's own ``train_epoch`` over ``--windows`` windows once to warm up,
then times the same windows again and reports minor page faults, system and user CPU time
and wall time per step (``getrusage``). The default side runs with ``RNNKIT_MALLOC=default``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch

import harness

PROBE = """
import argparse, json, resource, sys, time
import torch
sys.path.insert(0, {bench!r})
from rnnkit.cli import malloc
threshold = malloc.tune()
torch.set_num_threads({threads})
from quick import BATCH, BPTT, lm_task, ptb
from rnnkit.data.batching import batchify
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch
corpus, _ = ptb(argparse.Namespace(data={data!r}))
config, task = lm_task(corpus, "lstm", {hidden}, torch.device("cpu"))
task.columns = batchify(corpus.train, BATCH)[: {windows} * BPTT + 1]
optimizer = make_optimizer(task.model, config)
history, generator = History(lr=20.0), torch.Generator().manual_seed(0)
train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)
r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
n = {windows}
print(json.dumps({{"threshold": threshold, "faults": (r1.ru_minflt - r0.ru_minflt) / n,
    "sys_ms": 1000 * (r1.ru_stime - r0.ru_stime) / n, "user_ms": 1000 * (r1.ru_utime - r0.ru_utime) / n,
    "wall_ms": 1000 * (t1 - t0) / n}}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/ptb")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--windows", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="bench/out/malloc.json")
    args = p.parse_args()
    bench = str(Path(__file__).resolve().parent)
    code = PROBE.format(
        bench=bench, threads=args.threads, data=args.data, hidden=args.hidden, windows=args.windows
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RNNKIT_MALLOC"}
    sides = {"glibc default": {**clean, "RNNKIT_MALLOC": "default"}, "rnnkit settings": clean}
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, env in sides.items():
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"LSTM 2x{args.hidden}, batch 20 x bptt 35, {args.threads} thread(s), medians of {args.repeats}:")
    print("| malloc | minor faults/step | system ms/step | user ms/step | CPU ms/step | wall ms/step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = {}
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("faults", "sys_ms", "user_ms", "wall_ms")}
        med["cpu_ms"] = statistics.median(r["sys_ms"] + r["user_ms"] for r in runs)
        rows[name] = {"runs": runs, "median": med}
        print(
            f"| {name} | {med['faults']:.0f} | {med['sys_ms']:.1f} | {med['user_ms']:.1f} | "
            f"{med['cpu_ms']:.1f} | {med['wall_ms']:.1f} |"
        )
    base, ours = rows["glibc default"]["median"], rows["rnnkit settings"]["median"]
    print(
        f"system time share of the step's CPU time: {100 * base['sys_ms'] / base['cpu_ms']:.0f}% -> "
        f"{100 * ours['sys_ms'] / ours['cpu_ms']:.0f}%; "
        f"CPU time per step x{ours['cpu_ms'] / base['cpu_ms']:.2f}"
    )
    harness.write_json(
        args.json, {"machine": harness.machine(torch.device("cpu")), "args": vars(args), "rows": rows}
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
