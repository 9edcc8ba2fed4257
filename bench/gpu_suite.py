"""The GPU suite (≤ 5 minutes on one GPU): rnnkit against the standard recipe, fp32 and bf16.

    python bench/gpu_suite.py --device cuda --data bench/out/data/ptb --json $OUT/gpu-suite.json
    python bench/gpu_suite.py --device cpu --hidden 64 --steps 20 --repeats 2   # a CPU dry run

For each size (2 layers x ``--hidden``, batch ``--batch``, bptt 35, full softmax), side by
side in this process and interleaved (``harness.py``):

- training tokens/s of the recipe (PyTorch's word_language_model: nn.LSTM + Linear +
  cross-entropy, fp32) against rnnkit's ``train_epoch`` in fp32 (target ≥ 1.0x) and under
  bf16 autocast (``train.precision = "bf16"``: target ≥ 1.5x the fp32 recipe), and the
  recipe under bf16 autocast too, for a like-for-like ratio;
- quality: rnnkit fp32 and bf16 trained from the same initial weights on the same
  ``--steps`` windows, then the validation perplexity of each on the same text (target:
  bf16 within 1% of fp32);
- the device, torch/CUDA/cuDNN versions, the matmul peak in fp32 and bf16, and whether TF32
  is allowed for matmuls and for cuDNN (the defaults are kept, and stated).

A device that is not available is reported and skipped: no figure is printed that was not
measured.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from lm_step import RecipeLM, recipe_epoch
from quick import BPTT, lm_task, ptb
from rnnkit.data.batching import batchify
from rnnkit.tasks.lm import evaluate_lm
from rnnkit.training.loop import Cursor, History, cpu_bf16_problem, make_optimizer, train_epoch


def precisions(device: torch.device) -> tuple[str, ...]:
    """fp32 and bf16; fp32 alone on a CPU whose torch cannot run a recurrent layer in bf16."""
    return ("fp32",) if device.type == "cpu" and cpu_bf16_problem() else ("fp32", "bf16")


def ratio_keys(row: dict) -> list[str]:
    """The speed ratios a row of :func:`speed_case` holds."""
    return [k for k in RATIOS if k in row]


RATIOS = ("rnnkit fp32 / recipe fp32", "rnnkit bf16 / recipe fp32", "rnnkit bf16 / recipe bf16")


def speed_case(corpus, hidden: int, args, device: torch.device) -> dict:
    vocab = len(corpus.vocab)
    columns = batchify(corpus.train, args.batch)[: args.windows * BPTT + 1].to(device)
    torch.manual_seed(0)
    recipe = RecipeLM(vocab, hidden, 2, 0.2, "LSTM").to(device)
    variants = {"recipe fp32": lambda: recipe_epoch(recipe, columns, BPTT, 1.0, 0.25, vocab)}

    def recipe_bf16() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            recipe_epoch(recipe, columns, BPTT, 1.0, 0.25, vocab)

    if "bf16" in precisions(device):
        variants["recipe bf16"] = recipe_bf16
    for precision in precisions(device):
        config, task = lm_task(
            corpus,
            "lstm",
            hidden,
            device,
            [f"--train.batch_size={args.batch}", f"--train.precision={precision}"],
        )
        task.columns = columns
        optimizer = make_optimizer(task.model, config)
        history = History(lr=1.0)

        def ours(task=task, optimizer=optimizer, config=config, history=history) -> None:
            train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, torch.Generator(), False)

        variants[f"rnnkit {precision}"] = ours
    times = harness.interleaved(variants, device, repeats=args.repeats, min_seconds=args.seconds)
    tokens = (columns.shape[0] - 1) * columns.shape[1]
    row = {
        "case": f"train lstm 2x{hidden} batch {args.batch}",
        "tokens_per_s": {k: tokens / statistics.median(v) for k, v in times.items()},
    }
    for key in RATIOS:
        ours, base = key.split(" / ")
        if ours in times and base in times:
            row[key] = harness.ratio(times, ours, base)
    return row


def quality_case(corpus, hidden: int, args, device: torch.device) -> dict:
    """Validation perplexity after the same windows from the same weights, fp32 vs bf16."""
    columns = batchify(corpus.train, args.batch)[: args.steps * BPTT + 1].to(device)
    valid = corpus.valid[: args.valid_tokens]
    torch.manual_seed(0)
    _, start = lm_task(corpus, "lstm", hidden, device, [f"--train.batch_size={args.batch}"])
    initial = copy.deepcopy(start.model.state_dict())
    out = {"case": f"quality lstm 2x{hidden}: {args.steps} steps of {args.batch}x{BPTT} tokens"}
    for precision in precisions(device):
        settings = [f"--train.batch_size={args.batch}", f"--train.precision={precision}"]  # lr 20, clip 0.25
        config, task = lm_task(corpus, "lstm", hidden, device, settings)
        task.model.load_state_dict(initial)
        task.columns = columns
        optimizer = make_optimizer(task.model, config)
        torch.manual_seed(1)  # the same dropout masks' seed for both
        started = time.perf_counter()
        train_epoch(
            task, optimizer, config, History(lr=1.0), Cursor(), lambda _: None, torch.Generator(), False
        )
        harness.sync(device)
        seconds = time.perf_counter() - started
        with torch.no_grad():  # evaluated in fp32 both: the weights are what is compared
            ppl = evaluate_lm(task.model, valid, 10, BPTT, device)["ppl"]
        out[precision] = {"valid_ppl": ppl, "train_seconds": seconds}
    if "bf16" in out:
        out["bf16 vs fp32"] = out["bf16"]["valid_ppl"] / out["fp32"]["valid_ppl"] - 1
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", default="bench/out/data/ptb", help="a PTB directory (default: the carried copy)")
    p.add_argument("--hidden", nargs="+", type=int, default=[650, 1500])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--windows", type=int, default=10, help="bptt windows per timed call")
    p.add_argument("--steps", type=int, default=300, help="training steps of the quality case")
    p.add_argument("--valid-tokens", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per timed block")
    p.add_argument("--json", default="bench/out/gpu-suite.json")
    args = p.parse_args()
    device = harness.usable_or_skipped(args.device)
    if device is None:
        return 0
    corpus, source = ptb(args)
    info = harness.machine(device)
    if device.type == "cuda":
        info["cuda"], info["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    info["tf32"] = {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": torch.backends.cudnn.allow_tf32,
    }
    info["peak_gflops"] = {
        "fp32": harness.matmul_peak(device),
        "bf16": harness.matmul_peak(device, dtype=torch.bfloat16),
    }
    print(f"data: {source}; {info}", flush=True)
    if "bf16" not in precisions(device):
        print(f"bf16 skipped: this CPU cannot run it ({cpu_bf16_problem()})", flush=True)
    rows = []
    for hidden in args.hidden:
        row = speed_case(corpus, hidden, args, device)
        rows.append(row)
        speed = ", ".join(f"{k} {v:.0f}" for k, v in row["tokens_per_s"].items())
        print(f"{row['case']}: tokens/s {speed}", flush=True)
        for key in ratio_keys(row):
            r = row[key]
            print(f"  {key}: {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]", flush=True)
    for hidden in args.hidden:
        row = quality_case(corpus, hidden, args, device)
        rows.append(row)
        fp32 = row["fp32"]["valid_ppl"]
        if "bf16" in row:
            bf16 = row["bf16"]["valid_ppl"]
            change = 100 * row["bf16 vs fp32"]
            print(f"{row['case']}: valid ppl fp32 {fp32:.2f}, bf16 {bf16:.2f} ({change:+.2f}%)")
        else:
            print(f"{row['case']}: valid ppl fp32 {fp32:.2f}")
    bad = [r for r in rows if "bf16 vs fp32" in r and not math.isfinite(r["bf16 vs fp32"])]
    harness.write_json(
        args.json, {"machine": info, "data": source, "command": " ".join(sys.argv), "rows": rows}
    )
    print(f"wrote {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
