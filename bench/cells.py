"""Forward+backward tokens/s of every cell: rnnkit's fast path vs torch's module, side by side.

Run from the repository root (after the README's set-up):

    python bench/cells.py                      # the issue's cases on this CPU (~10 min)
    python bench/cells.py --dispatch           # also own vs native per dtype/lengths
    python bench/cells.py --device cuda --dispatch

Each case builds one rnnkit module and the matching torch module with the same
weights (batch 20 x bptt 35, input size = hidden size, 2 layers by default), and times
one training step's recurrent part: forward, ``output.sum().backward()`` (the input
needs a gradient too, as after an embedding). Variants are interleaved (see
``harness.py``); ratios are ``rnnkit / baseline`` speed, median over repeats [min, max].
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import rnnkit

# (label, rnnkit cell, options, torch baseline class, its options, issue target ratio)
CASES = [
    ("lstm", "lstm", {}, nn.LSTM, {}, 0.95),
    ("gru", "gru", {}, nn.GRU, {}, 1.5),
    ("gru-cho", "gru", {"reset_after": False}, nn.GRU, {}, None),
    ("elman-sigmoid", "elman", {"nonlinearity": "sigmoid"}, nn.RNN, {"nonlinearity": "tanh"}, 1.0),
    ("elman-tanh", "elman", {"nonlinearity": "tanh"}, nn.RNN, {"nonlinearity": "tanh"}, 1.0),
    ("elman-relu", "elman", {"nonlinearity": "relu"}, nn.RNN, {"nonlinearity": "relu"}, 1.0),
]


def make_step(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, is_torch: bool):
    def step() -> None:
        if lengths is None:
            out, _ = module(x)
        elif is_torch:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out = pad_packed_sequence(module(packed)[0], total_length=x.shape[0])[0]
        else:
            out, _ = module(x, lengths=lengths)
        out.sum().backward()

    return step


def run_case(
    label, cell, options, base_cls, base_options, target, hidden, args, device, dtype, lengths_on, impls
):
    torch.manual_seed(0)
    ours = rnnkit.rnn(cell, hidden, hidden, num_layers=args.layers, device=device, dtype=dtype, **options)
    base = base_cls(hidden, hidden, num_layers=args.layers, **base_options).to(device=device, dtype=dtype)
    if not options or (label.startswith("elman-") and label != "elman-sigmoid"):
        base.load_state_dict(ours.state_dict(), strict=True)  # the same function, same weights
    x = torch.randn(args.bptt, args.batch, hidden, device=device, dtype=dtype, requires_grad=True)
    lengths = None
    if lengths_on:
        lengths = torch.randint(args.bptt // 2, args.bptt + 1, (args.batch,))
        lengths[0] = args.bptt
    variants = {"torch": make_step(base, x, lengths, True)}
    for impl in impls:
        if impl == "native" and rnnkit.layers.fast.native_op(ours.cell) is None:
            continue
        twin = ours if impl == "auto" else _with_impl(ours, impl)
        variants[impl] = make_step(twin, x, lengths, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        times = harness.interleaved(variants, device, repeats=args.repeats, min_seconds=args.seconds)
    tokens = args.bptt * args.batch
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    # forward + backward with the input's gradient: 6 multiply-adds per weight per token
    flops_per_token = sum(6 * gates * hidden * (hidden + hidden) for _ in range(args.layers))
    row = {
        "case": label,
        "hidden": hidden,
        "layers": args.layers,
        "dtype": str(dtype).replace("torch.", ""),
        "lengths": lengths_on,
        "tokens_per_s": {k: tokens / statistics.median(v) for k, v in times.items()},
        "ratio_vs_torch": {k: harness.ratio(times, k, "torch") for k in times if k != "torch"},
        "target": target if (dtype == torch.float32 and not lengths_on) else None,
        "gflops": {k: flops_per_token * tokens / statistics.median(v) / 1e9 for k, v in times.items()},
        "warnings": sorted({str(w.message)[:80] for w in caught}),
    }
    return row


def _with_impl(module, impl):
    import copy

    twin = copy.deepcopy(module)
    twin.impl = impl
    return twin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, nargs="+", default=[200, 650])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.5, help="length of one timed block")
    p.add_argument("--cases", nargs="+", default=[c[0] for c in CASES])
    p.add_argument("--dispatch", action="store_true", help="also time own vs native with lengths and in fp64")
    p.add_argument("--reference", action="store_true", help="also time the reference (Python loop) path")
    p.add_argument("--json", default=None, help="output file (default bench/out/cells-DEVICE.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if hasattr(torch.backends.cudnn, "rnn") and hasattr(torch.backends.cudnn.rnn, "fp32_precision"):
            torch.backends.cudnn.rnn.fp32_precision = "ieee"  # torch >= 2.9 defaults cuDNN RNNs to TF32
    impls = ["auto", "own", "native"] + (["reference"] if args.reference else [])
    settings = [(torch.float32, False)]
    if args.dispatch:
        settings += [(torch.float32, True), (torch.float64, False)]
    rows = []
    peak = harness.matmul_peak(device, dtype=torch.float32)
    print(f"matmul peak (1024^3, float32): {peak:.1f} GFLOP/s; 'auto %peak' = rnnkit's FLOP rate / peak")
    print(
        f"{'case':14} {'H':>4} {'dtype':7} {'len':3} {'torch tok/s':>11}  "
        + "  ".join(f"{k:>22}" for k in impls)
        + "  auto %peak"
    )
    for hidden in args.hidden:
        for label, cell, options, base_cls, base_options, target in CASES:
            if label not in args.cases:
                continue
            for dtype, lengths_on in settings:
                row = run_case(
                    label,
                    cell,
                    options,
                    base_cls,
                    base_options,
                    target,
                    hidden,
                    args,
                    device,
                    dtype,
                    lengths_on,
                    impls,
                )
                rows.append(row)
                for w in row["warnings"]:
                    print(f"  warning: {w}")
                cells = []
                for k in impls:
                    r = row["ratio_vs_torch"].get(k)
                    cells.append(f"{r['median']:5.2f}x [{r['min']:4.2f},{r['max']:4.2f}]" if r else "-")
                flag = ""
                if row["target"] is not None:
                    flag = "  target {:.2f}x {}".format(
                        row["target"],
                        "met" if row["ratio_vs_torch"]["auto"]["median"] >= row["target"] else "MISSED",
                    )
                print(
                    f"{label:14} {hidden:>4} {row['dtype']:7} {'yes' if lengths_on else 'no':3} "
                    f"{row['tokens_per_s']['torch']:11.0f}  "
                    + "  ".join(f"{c:>22}" for c in cells)
                    + f"  {100 * row['gflops']['auto'] / peak:9.0f}%"
                    + flag,
                    flush=True,
                )
    out = args.json or f"bench/out/cells-{device.type}.json"
    harness.write_json(
        out,
        {"machine": harness.machine(device), "matmul_peak_gflops": peak, "args": vars(args), "rows": rows},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
