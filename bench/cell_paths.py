"""The fast path of a loop cell against its reference loop: ``rnnkit.rnn(cell, H, H, 2)`` with
``impl="own"`` and ``impl="reference"``, forward + backward of ``out.sum()``, in one process.

    python bench/cell_paths.py                  # slstm and lnlstm, L = 35 and 256
    python bench/cell_paths.py --cells slstm --lengths 35 --json bench/results/slstm.json
    python bench/cell_paths.py --kernel slstm --hidden 100 --lengths 200 400   # kernel vs autograd

``--kernel CELL`` times one direction in training (forward + backward) two ways from the same
input part: the fast path's kernel (:class:`rnnkit.layers.slstm.SLSTMRecurrence`,
:class:`rnnkit.layers.lnlstm.LNLSTMRecurrence`) and autograd through the cell's update step by
step (the modules' ``step_loop``, the fast path before the kernel). ``--slstm-kernel`` is
``--kernel slstm``.

Tokens/s = L * N / time, the best of ``--repeats`` after two warm-up rounds, the two paths
interleaved so that a change in the machine's load falls on both (issue 22).
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
from pathlib import Path

import torch

import rnnkit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness


def measure(cell: str, length: int, hidden: int, batch: int, repeats: int) -> dict:
    """One row: both paths' tokens/s and their ratio."""
    torch.manual_seed(0)
    models = {impl: rnnkit.rnn(cell, hidden, hidden, 2, impl=impl) for impl in ("reference", "own")}
    models["own"].load_state_dict(models["reference"].state_dict())
    x = torch.randn(length, batch, hidden)
    times: dict[str, list[float]] = {impl: [] for impl in models}
    for _ in range(repeats + 2):
        for impl, model in models.items():
            start = time.perf_counter()
            model(x)[0].sum().backward()
            times[impl].append(time.perf_counter() - start)
    row = {"cell": cell, "L": length}
    for impl, seconds in times.items():
        row[f"{impl}_tokens_per_s"] = round(length * batch / min(seconds[2:]))
    row["own_over_reference"] = round(row["own_tokens_per_s"] / row["reference_tokens_per_s"], 2)
    return row


def kernel_paths(cell_name: str, length: int, hidden: int, batch: int) -> dict:
    """The two ways to train one direction of ``cell_name`` from the same input part: its
    kernel and autograd through the cell's update step by step."""
    torch.manual_seed(0)
    if cell_name == "slstm":
        from rnnkit.cells import SLSTMCell, SLSTMState
        from rnnkit.layers.slstm import SLSTMRecurrence, step_loop

        cell = SLSTMCell(hidden, hidden)
        xp = torch.randn(length, batch, 4 * hidden, requires_grad=True)
        state = SLSTMState(*(torch.zeros(batch, hidden) for _ in range(4)))
        return {
            "autograd_loop": lambda: step_loop(xp, state, cell.weight_hh, None, False)[0],
            "kernel": lambda: SLSTMRecurrence.apply(xp, *state, cell.weight_hh, None, False)[0],
        }
    from rnnkit.cells import LayerNormLSTMCell, LSTMState
    from rnnkit.layers.lnlstm import LNLSTMRecurrence, step_loop

    cell = LayerNormLSTMCell(hidden, hidden)
    xp = torch.randn(length, batch, 4 * hidden, requires_grad=True)
    state = LSTMState(torch.zeros(batch, hidden), torch.zeros(batch, hidden))
    recurrent = [cell.weight_hh, cell.ln_hh_weight, cell.ln_hh_bias, cell.ln_c_weight, cell.ln_c_bias]
    return {
        "autograd_loop": lambda: step_loop(xp, state, *recurrent, None)[0],
        "kernel": lambda: LNLSTMRecurrence.apply(xp, *state, *recurrent, None)[0],
    }


def measure_kernel(cell_name: str, length: int, hidden: int, batch: int, repeats: int) -> dict:
    """One row: a cell's kernel and its autograd loop, training tokens/s, one direction."""
    paths = kernel_paths(cell_name, length, hidden, batch)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats + 2):
        for name, run in paths.items():
            start = time.perf_counter()
            run().sum().backward()
            times[name].append(time.perf_counter() - start)
    row = {"cell": cell_name, "H": hidden, "N": batch, "L": length}
    for name, seconds in times.items():
        row[f"{name}_tokens_per_s"] = round(length * batch / min(seconds[2:]))
    row["kernel_over_autograd_loop"] = round(
        row["kernel_tokens_per_s"] / row["autograd_loop_tokens_per_s"], 2
    )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", default=["slstm", "lnlstm"], choices=["slstm", "lnlstm"])
    p.add_argument("--lengths", nargs="+", type=harness.count, default=[35, 256])
    p.add_argument("--hidden", type=harness.count, default=256)
    p.add_argument("--batch", type=harness.count, default=32)
    p.add_argument("--repeats", type=harness.count, default=6)
    p.add_argument("--threads", type=harness.count, default=1)
    p.add_argument("--json", default="bench/results/cell_paths.json")
    p.add_argument(
        "--kernel", choices=["slstm", "lnlstm"], help="this cell's kernel against its autograd loop"
    )
    p.add_argument("--slstm-kernel", action="store_true", help="the same as --kernel slstm")
    args = p.parse_args()
    if args.slstm_kernel:
        args.kernel = "slstm"
    torch.set_num_threads(args.threads)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "torch": torch.__version__,
        "threads": args.threads,
        "setup": f"rnnkit.rnn(cell, {args.hidden}, {args.hidden}, 2), float32, N = {args.batch}",
        "load_average": os.getloadavg()[0],
        "results": [],
    }
    for length in args.lengths if args.kernel else []:
        row = measure_kernel(args.kernel, length, args.hidden, args.batch, args.repeats)
        out["results"].append(row)
        print(
            f"{args.kernel} H={args.hidden} N={args.batch} L={length:4d}  autograd loop "
            f"{row['autograd_loop_tokens_per_s']:7d} tok/s  kernel {row['kernel_tokens_per_s']:7d} tok/s  "
            f"{row['kernel_over_autograd_loop']:.2f}x",
            flush=True,
        )
    for cell in [] if args.kernel else args.cells:
        for length in args.lengths:
            row = measure(cell, length, args.hidden, args.batch, args.repeats)
            out["results"].append(row)
            print(
                f"{cell:8s} L={length:4d}  reference {row['reference_tokens_per_s']:7d} tok/s  "
                f"own {row['own_tokens_per_s']:7d} tok/s  {row['own_over_reference']:.2f}x",
                flush=True,
            )
    out["load_average_end"] = os.getloadavg()[0]
    harness.write_json(args.json, out)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # piped into head: end quietly, as rnnkit does
    main()
