"""Choices that could change the speed of a training step, measured side by side in one process.

    python bench/choices.py                   # PTB windows, 2x200 LSTM LM, batch 20 x bptt 35, CPU
    python bench/choices.py --json bench/out/choices.json

Each row times two ways of running the same training step, interleaved (``harness.py``),
and prints tokens/s of each and their ratio (median of 5 repeats, [min, max]):

- **threads**: rnnkit's ``train_epoch`` with 1 intra-op thread against all the cores
  (``--train.threads=0``, the default, takes torch's, which is one per core);
- **layout**: the recipe's ``nn.LSTM`` time-major (``(L, N, H)``, what rnnkit and torch use)
  against ``batch_first=True`` on the same windows;
- **torch.compile**: the recipe's model compiled (inductor, default mode) against eager,
  after the compilation (its time is printed); rnnkit's LM likewise, if it compiles. A
  case that fails to compile says so and prints no figure.

rnnkit keeps a default when it measured the faster one (bench/RESULTS.md says which).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from lm_step import RecipeLM
from rnnkit.cli import malloc
from rnnkit.config import load_config
from rnnkit.data.batching import batchify, bptt_windows
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch

BATCH, BPTT, HIDDEN, LR, CLIP = 20, 35, 200, 20.0, 0.25


def recipe_step(model: nn.Module, vocab: int, batch_first: bool = False):
    """One pass of the example's loop over ``columns``, as a function of the windows."""
    criterion = nn.CrossEntropyLoss()

    def run(columns: torch.Tensor) -> None:
        hidden = None
        for _, x, y in bptt_windows(columns, BPTT):
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            model.zero_grad()
            if batch_first:
                logits, hidden = model(x.t(), hidden)
                loss = criterion(logits.reshape(-1, vocab), y.t().reshape(-1))
            else:
                logits, hidden = model(x, hidden)
                loss = criterion(logits.reshape(-1, vocab), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-LR)

    return run


class BatchFirstLM(RecipeLM):
    """The recipe with ``batch_first=True``: input (N, L), logits (N, L, V)."""

    def __init__(self, vocab: int) -> None:
        super().__init__(vocab, HIDDEN, 2, 0.2, "LSTM")
        self.rnn = nn.LSTM(HIDDEN, HIDDEN, 2, dropout=0.2, batch_first=True)


def row(name: str, a: str, b: str, times: dict[str, list[float]], tokens: int) -> dict:
    speed = {k: tokens / statistics.median(v) for k, v in times.items()}
    r = harness.ratio(times, b, a)
    print(
        f"{name:14} {a}: {speed[a]:8.0f} tok/s   {b}: {speed[b]:8.0f} tok/s   "
        f"{b}/{a} {r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]",
        flush=True,
    )
    return {"case": name, "tokens_per_s": speed, "ratio": r, "baseline": a, "variant": b}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/ptb")
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--json", default="bench/out/choices.json")
    args = p.parse_args()
    if not Path(args.data).exists():
        print(f"--data {args.data}: no PTB directory there", file=sys.stderr)
        return 2
    malloc.tune()
    cores = torch.get_num_threads()
    device = torch.device("cpu")
    corpus = load_corpus(locate(args.data))
    vocab = len(corpus.vocab)
    columns = batchify(corpus.train, BATCH)[: args.windows * BPTT + 1]
    tokens = args.windows * BPTT * BATCH
    rows = []

    config = load_config(
        None,
        [
            f"--model.embed_size={HIDDEN}",
            f"--model.hidden_size={HIDDEN}",
            "--model.dropout=0.2",
            f"--train.lr={LR}",
            f"--train.clip_norm={CLIP}",
            f"--train.bptt={BPTT}",
            "--train.log_every=1000000",
        ],
    )
    task = LanguageModelling(config, corpus, device)
    task.columns = columns
    optimizer = make_optimizer(task.model, config)
    history, generator = History(lr=LR), torch.Generator().manual_seed(0)

    def ours(threads: int):
        def run() -> None:
            torch.set_num_threads(threads)
            train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)
            torch.set_num_threads(cores)

        return run

    if cores > 1:
        times = harness.interleaved(
            {"1 thread": ours(1), f"{cores} threads": ours(cores)}, device, args.repeats, args.seconds
        )
        rows.append(row("threads", "1 thread", f"{cores} threads", times, tokens))
    else:
        print("threads        skipped: one core")

    torch.manual_seed(0)
    time_major = RecipeLM(vocab, HIDDEN, 2, 0.2, "LSTM")
    batch_first = BatchFirstLM(vocab)
    batch_first.load_state_dict(time_major.state_dict())
    tm, bf = recipe_step(time_major, vocab), recipe_step(batch_first, vocab, batch_first=True)
    times = harness.interleaved(
        {"time-major": lambda: tm(columns), "batch-first": lambda: bf(columns)},
        device,
        args.repeats,
        args.seconds,
    )
    rows.append(row("layout", "time-major", "batch-first", times, tokens))

    def rnnkit_step(compiled: bool):
        other = LanguageModelling(config, corpus, device)
        other.columns = columns
        if compiled:
            other.model.compile()  # in place: every call of the module runs the compiled forward
        other_optimizer = make_optimizer(other.model, config)
        hist, gen = History(lr=LR), torch.Generator().manual_seed(0)
        return lambda: train_epoch(other, other_optimizer, config, hist, Cursor(), lambda _: None, gen, False)

    def recipe_compiled(compiled: bool):
        torch.manual_seed(0)
        model = RecipeLM(vocab, HIDDEN, 2, 0.2, "LSTM")
        if compiled:
            model.compile()
        step = recipe_step(model, vocab)
        return lambda: step(columns)

    for name, make in (("compile recipe", recipe_compiled), ("compile rnnkit", rnnkit_step)):
        try:
            eager, fast = make(False), make(True)
            start = time.perf_counter()
            fast()  # compiles
            print(f"{name:14} compiled in {time.perf_counter() - start:.0f} s", flush=True)
            times = harness.interleaved(
                {"eager": eager, "compiled": fast}, device, args.repeats, args.seconds
            )
            rows.append(row(name, "eager", "compiled", times, tokens))
        except Exception as err:  # any compiler failure is a skipped row
            text = str(err).strip()
            message = text.splitlines()[0][:200] if text else type(err).__name__
            print(f"{name:14} skipped: torch.compile failed ({message})", flush=True)
            rows.append({"case": name, "skipped": message})

    harness.write_json(args.json, {"machine": harness.machine(device), "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
