"""minGRU / minLSTM against the LSTM: LM training tokens/s, and the parallel scan against its loop.

Run from the repository root (after the README's set-up):

    python bench/mincells.py                    # both parts on this CPU (~10 min on 2 cores)
    python bench/mincells.py --part scan --lengths 64 256 1024 4096
    python bench/mincells.py --device cuda
    python bench/mincells.py --part lm --cells lstm lnlstm slstm --bptt 35

Part ``lm``: the ptb-60min preset's network (2x650, dropout 0.5, adaptive softmax with PTB's
cutoffs, SGD with clipping; ``--config`` another preset's, ``--set`` another recipe for the
new cells, e.g. ``--config ptb-15min --set train.optimizer=adam``) over synthetic tokens of
a 10k vocabulary, batch 20, bptt 35 and 256, trained by rnnkit's own ``train_epoch`` (the
loop ``rnnkit train`` runs) for a few windows per call; the LSTM runs on its fast path
(torch's fused op: oneDNN on CPUs, cuDNN on GPUs), the min cells on their fast path (the
in-place loop on CPUs, the log-space scan elsewhere: ``rnnkit.layers.scan.best_method``).
Part ``scan``: one layer's recurrence h_t = a_t h_{t-1} + b_t (N = 20, H = 650, forward and
backward) by the log-space scan :func:`~rnnkit.layers.scan.linear_scan` at several chunk
sizes against its own sequential loop :func:`~rnnkit.layers.scan.loop_scan` (stepped in
place, hand-written backward), and, up to ``--autograd-max`` steps, the loop under autograd
(:func:`~rnnkit.layers.scan.sequential_scan`).
Variants are interleaved in one process (``harness.py``); ratios are speed over the
baseline's, median over repeats [min, max].
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from rnnkit.cells.mingru import g
from rnnkit.config import load_config
from rnnkit.data.corpora import Corpus
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.layers.scan import linear_scan, loop_scan, sequential_scan
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch

CELLS = ("lstm", "mingru", "minlstm")
"""The lm part's default cells (``--cells``: any of rnnkit's, the LSTM always first)."""


def lm_variant(cell: str, bptt: int, args: argparse.Namespace, device: torch.device, columns: torch.Tensor):
    """One epoch of ``args.windows`` windows of the ``args.config`` network with ``cell`` (and,
    for a cell other than the LSTM, the ``args.set`` settings), as a callable."""
    recipe = [] if cell == "lstm" else [f"--{setting}" for setting in args.set]
    config = load_config(
        args.config,
        [
            *recipe,
            f"--model.cell={cell}",
            f"--train.bptt={bptt}",
            f"--train.batch_size={args.batch}",
            f"--train.log_every={args.windows}",
            f"--train.threads={torch.get_num_threads()}",
        ],
    )
    corpus = Corpus(
        vocab=Vocab([f"w{i}" for i in range(args.vocab)]),
        codec=Codec("word"),
        train=columns.t().flatten().cpu(),
        valid=None,
        test=None,
    )
    torch.manual_seed(0)
    task = LanguageModelling(config, corpus, device)
    optimizer = make_optimizer(task.model, config)
    history = History(lr=config.train.lr)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> None:
        train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)

    return epoch


def lm_part(args: argparse.Namespace, device: torch.device) -> list[dict]:
    cells = ["lstm", *(c for c in args.cells if c != "lstm")]
    print(f"{'bptt':>5} " + " ".join(f"{c + ' tok/s':>14}" for c in cells) + "   ratios to the LSTM")
    rows = []
    for bptt in args.bptt:
        torch.manual_seed(0)
        columns = torch.randint(args.vocab, (args.windows * bptt + 1, args.batch))
        variants = {cell: lm_variant(cell, bptt, args, device, columns) for cell in cells}
        times = harness.interleaved(variants, device, repeats=args.repeats, min_seconds=args.seconds)
        tokens = args.windows * bptt * args.batch
        speed = {k: tokens / sorted(v)[len(v) // 2] for k, v in times.items()}
        ratios = {cell: harness.ratio(times, cell, "lstm") for cell in cells[1:]}
        text = "  ".join(
            f"{c} {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]" for c, r in ratios.items()
        )
        print(f"{bptt:5d} " + " ".join(f"{speed[c]:14.0f}" for c in cells) + f"   {text}")
        rows.append({"bptt": bptt, "tokens_per_s": speed, "ratio_to_lstm": ratios})
    return rows


def scan_part(args: argparse.Namespace, device: torch.device) -> list[dict]:
    names = [f"scan {c}" for c in args.chunks] + ["autograd"]
    print(f"{'L':>5} {'loop ms':>9} " + " ".join(f"{name + ' ms':>14}" for name in names))
    rows = []
    for L in args.lengths:
        torch.manual_seed(0)
        k = torch.randn(L, args.batch, args.hidden, device=device)
        v = torch.randn(L, args.batch, args.hidden, device=device)
        leaves = [(-F.softplus(k)).requires_grad_(), (torch.sigmoid(k) * g(v)).requires_grad_()]
        h0 = torch.zeros(args.batch, args.hidden, device=device)
        w = torch.randn(L, args.batch, args.hidden, device=device)

        def run(scan, leaves=leaves, h0=h0, w=w):
            def step() -> None:
                (scan(*leaves, h0) * w).sum().backward()
                for t in leaves:
                    t.grad = None

            return step

        variants = {"loop": run(loop_scan)}
        for chunk in args.chunks:
            variants[f"scan {chunk}"] = run(lambda a, b, h, c=chunk: linear_scan(a, b, h, c))
        if args.autograd_max >= L:
            variants["autograd"] = run(sequential_scan)
        times = harness.interleaved(variants, device, repeats=args.repeats, min_seconds=args.seconds)
        ms = {name: 1e3 * sorted(t)[len(t) // 2] for name, t in times.items()}
        ratios = {name: harness.ratio(times, name, "loop") for name in variants if name != "loop"}
        cells = [f"{ms[name]:14.2f}" if name in ms else f"{'-':>14}" for name in names]
        print(f"{L:5d} {ms['loop']:9.2f} " + " ".join(cells))
        rows.append({"L": L, "ms_fwd_bwd": ms, "speed_over_loop": ratios})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--part", choices=("lm", "scan", "both"), default="both")
    p.add_argument("--bptt", type=harness.count, nargs="+", default=[35, 256])
    p.add_argument("--cells", nargs="+", default=list(CELLS), help="lm part: the cells (the LSTM always)")
    p.add_argument("--config", default="ptb-60min", help="lm part: the preset (or TOML) timed")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="lm part: a setting for the cells other than the LSTM, e.g. train.optimizer=adam (repeatable)",
    )
    p.add_argument("--vocab", type=harness.count, default=10000, help="vocabulary size (PTB: 10000)")
    p.add_argument("--batch", type=harness.count, default=20)
    p.add_argument("--hidden", type=harness.count, default=650, help="scan part: H")
    p.add_argument("--windows", type=harness.count, default=4, help="lm part: windows per timed call")
    p.add_argument("--lengths", type=harness.count, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--chunks", type=harness.count, nargs="+", default=[64, 256, 4096])
    p.add_argument("--autograd-max", type=int, default=256, help="scan part: longest L for the autograd loop")
    p.add_argument("--repeats", type=harness.count, default=5)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--json", default="bench/results/mincells.json")
    args = p.parse_args()
    try:  # the preset and the settings, checked before anything is timed
        for cell in {"lstm", *args.cells}:
            load_config(args.config, [*(f"--{s}" for s in args.set), f"--model.cell={cell}"])
    except RnnkitError as err:
        p.error(str(err))
    device = harness.usable(args.device)
    # Each part is written as soon as it is measured, into the file's entry of that part (an
    # earlier run's other part is kept), with its own machine line and settings.
    path = Path(args.json)
    payload = json.loads(path.read_text()) if path.exists() else {}
    settings = {"machine": harness.machine(device), "batch": args.batch, "threads": torch.get_num_threads()}
    if args.part in ("lm", "both"):
        rows = lm_part(args, device)
        payload["lm"] = {
            **settings,
            "config": args.config,
            "set": args.set,
            "vocab": args.vocab,
            "windows": args.windows,
            "rows": rows,
        }
        harness.write_json(path, payload)
    if args.part in ("scan", "both"):
        rows = scan_part(args, device)
        payload["scan"] = {**settings, "hidden": args.hidden, "rows": rows}
        harness.write_json(path, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # piped into head: end quietly, as rnnkit does
    main()
