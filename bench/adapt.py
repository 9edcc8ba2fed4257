"""Tokens/s of dynamic evaluation and the neural cache against plain evaluation (issue 21, speed).

    python bench/adapt.py --run runs/ptb-3min --tokens 1000 --json bench/results/adapt.json

Side by side in this process, interleaved (``harness.py``), on the first ``--tokens`` tokens
of the run's validation split (never its test split), ``--threads`` threads:

- ``plain``: what ``rnnkit evaluate RUN`` runs: the text cut into ``train.eval_batch_size``
  columns, windows of ``train.bptt`` tokens, no gradient;
- ``plain stream``: the text as one stream (one column), no adaptation: what every adapted
  evaluation reads, so the cost of the batch of one is told apart from the adaptation's;
- ``cache``: the neural cache (window 500) on that stream;
- ``dynamic n=5`` / ``dynamic n=20``: dynamic evaluation, a forward, a backward and an update
  of every weight per segment of n tokens (5: Krause et al.'s PTB setting);
- ``dynamic,cache``: both, n=5.

The gradient statistics dynamic evaluation needs once (MS on ``--stats-tokens`` training
tokens) are timed apart and reported, not counted in the per-token figures. Ratios are
medians over repeats of per-repeat ratios [min, max]; > 1 means faster than the base.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import rnnkit
from rnnkit.adapt import Adapter, AdaptSettings, CacheSettings, DynamicSettings, split_text
from rnnkit.tasks.lm import evaluate_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default="runs/ptb-3min", help="a language model run (default: runs/ptb-3min)"
    )
    parser.add_argument("--tokens", type=int, default=1000, help="validation tokens per call (default: 1000)")
    parser.add_argument("--stats-tokens", type=int, default=100_000, help="training tokens for MS")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = rnnkit.load(args.run, device="cpu")
    text = split_text(run, "valid")
    ids = [i for part in text.ids(args.tokens) for i in part]
    stream = torch.tensor(ids)
    adapter = Adapter(run)
    start = time.perf_counter()
    adapter.mean_square(DynamicSettings(stats_tokens=args.stats_tokens))
    adapter.mean_square(DynamicSettings(stats_tokens=args.stats_tokens, segment=20))
    stats_seconds = (time.perf_counter() - start) / 2
    t = run.config.train

    def adapted(settings: AdaptSettings):
        def call() -> None:
            s, _ = adapter.stream(settings)
            s.feed(ids)
            s.flush()

        return call

    def dyn(n: int) -> DynamicSettings:
        return DynamicSettings(segment=n, stats_tokens=args.stats_tokens)

    variants = {
        "plain": lambda: evaluate_lm(run.model, stream, t.eval_batch_size, t.bptt, torch.device("cpu")),
        "plain stream": adapted(AdaptSettings(("cache",), cache=CacheSettings(lam=0.0))),
        "cache": adapted(AdaptSettings(("cache",))),
        "dynamic n=5": adapted(AdaptSettings(("dynamic",), dynamic=dyn(5))),
        "dynamic n=20": adapted(AdaptSettings(("dynamic",), dynamic=dyn(20))),
        "dynamic,cache": adapted(AdaptSettings(("dynamic", "cache"), dynamic=dyn(5))),
    }
    times = harness.interleaved(
        variants, torch.device("cpu"), repeats=args.repeats, min_seconds=0.1, warmup=1
    )
    rows = {}
    print(
        f"{args.run}: {len(ids)} validation tokens per call, {args.threads} thread(s), load {os.getloadavg()}"
    )
    print(f"{'variant':<16}{'tokens/s':>10}{'vs plain':>22}{'vs plain stream':>22}")
    for name in variants:
        tps = len(ids) / min(times[name])
        vs_plain = harness.ratio(times, name, "plain")
        vs_stream = harness.ratio(times, name, "plain stream")
        rows[name] = {
            "tokens_per_s": tps,
            "vs_plain": vs_plain,
            "vs_plain_stream": vs_stream,
            "seconds": times[name],
        }
        print(
            f"{name:<16}{tps:>10.0f}"
            f"{vs_plain['median']:>10.3f} [{vs_plain['min']:.3f}, {vs_plain['max']:.3f}]"
            f"{vs_stream['median']:>10.3f} [{vs_stream['min']:.3f}, {vs_stream['max']:.3f}]"
        )
    print(
        f"gradient statistics (once per evaluation): {stats_seconds:.1f} s "
        f"on {args.stats_tokens} training tokens"
    )
    if args.json:
        harness.write_json(
            args.json,
            {
                "machine": harness.machine(torch.device("cpu")) | {"load": os.getloadavg()},
                "command": " ".join(["python", *sys.argv]),
                "run": args.run,
                "tokens": len(ids),
                "stats_tokens": args.stats_tokens,
                "stats_seconds": stats_seconds,
                "variants": rows,
            },
        )


if __name__ == "__main__":
    main()
