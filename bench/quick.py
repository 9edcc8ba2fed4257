"""The quick performance suite (≤ 15 min on 2 CPU cores): rnnkit against the standard recipe.

    python bench/quick.py                                   # PTB from ../shared/data, this CPU
    python bench/quick.py --device cuda --json bench/out/quick-cuda.json

What it measures, each side by side in this one process, interleaved (``harness.py``):

- training tokens/s of a word-level LM (batch 20, bptt 35, 10k PTB words, full softmax)
  for each cell at 2x200 and 2x650: rnnkit's own ``train_epoch`` (the loop ``rnnkit
  train`` runs) against PyTorch's word_language_model example written out here
  (``lm_step.RecipeLM``), as a ratio and as a fraction of the matrix-multiply peak
  measured in the same run (FLOPs per token counted from the shapes);
- the adaptive softmax (LSTM, each size) against that full-softmax recipe (tokens/s only:
  its perplexity after the same tokens is the long suite's);
- evaluation tokens/s (the no-grad forward over the validation text, batch 10 as in the
  example; ``--eval-batch`` adds other sizes) against the recipe's evaluation, and as a
  fraction of the peak;
- generation latency per token (2x650 LSTM) and scoring throughput (sentences/s), rnnkit
  only.

A case whose cell or device is unavailable is reported as skipped, never with a figure it
did not measure. The recipe must run at the example's known speed on this machine (3.9-5.0k
tokens/s for the 2x200 LSTM on 2 cores) before a ratio means anything: the line says so.
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
from lm_step import RecipeLM, recipe_epoch
from rnnkit.cli import malloc
from rnnkit.config import load_config
from rnnkit.data.batching import batchify, bptt_windows
from rnnkit.data.corpora import Corpus, load_corpus, locate
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.tasks.lm import LanguageModelling, evaluate_lm, generate, score_line
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch

CELLS = {"lstm": ("lstm", "LSTM", 4), "gru": ("gru", "GRU", 3), "elman-tanh": ("elman", "RNN_TANH", 1)}
BATCH, BPTT = 20, 35


def train_flops(gates: int, hidden: int, layers: int, vocab: int) -> float:
    """Multiply-add FLOPs per token of one training step: 3x the forward (forward, and the
    backward's two products per matrix); the forward is each layer's gate products
    2·gates·H·(I+H) and the softmax's 2·H·V (elementwise work left out)."""
    return 3 * forward_flops(gates, hidden, layers, vocab)


def forward_flops(gates: int, hidden: int, layers: int, vocab: int) -> float:
    return layers * 2 * gates * hidden * (2 * hidden) + 2 * hidden * vocab


def ptb(args: argparse.Namespace) -> tuple[Corpus, str]:
    root = Path(args.data)
    if root.exists():
        return load_corpus(locate(str(root))), f"PTB ({root})"
    g = torch.Generator().manual_seed(0)
    words = Vocab([f"w{i}" for i in range(10000)])
    tokens = torch.randint(10000, (200_000,), generator=g)
    return Corpus(words, Codec("word"), tokens, tokens[:50_000], None), "generated tokens (no PTB found)"


def lm_task(corpus: Corpus, cell: str, hidden: int, device: torch.device, extra: list[str] = ()):
    config = load_config(
        None,
        [
            f"--model.cell={cell}",
            f"--model.embed_size={hidden}",
            f"--model.hidden_size={hidden}",
            "--model.num_layers=2",
            "--model.dropout=0.2",  # the example's default
            "--train.lr=20",
            "--train.clip_norm=0.25",
            f"--train.bptt={BPTT}",
            f"--train.batch_size={BATCH}",
            "--train.log_every=1000000",
            *extra,
        ],
    )
    return config, LanguageModelling(config, corpus, device)


def training_case(name, corpus, columns, hidden, args, device, peak, extra=(), adaptive=False) -> dict:
    cell, recipe_type, gates = CELLS[name]
    vocab = len(corpus.vocab)
    torch.manual_seed(0)
    recipe = RecipeLM(vocab, hidden, 2, 0.2, recipe_type).to(device)
    config, task = lm_task(corpus, cell, hidden, device, list(extra))
    task.columns = columns  # the same windows for both
    optimizer = make_optimizer(task.model, config)
    history, generator = History(lr=20.0), torch.Generator().manual_seed(0)

    def ours() -> None:
        train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)

    times = harness.interleaved(
        {"recipe": lambda: recipe_epoch(recipe, columns, BPTT, 20.0, 0.25, vocab), "rnnkit": ours},
        device,
        repeats=args.repeats,
        min_seconds=args.seconds,
    )
    tokens = (columns.shape[0] - 1) * columns.shape[1]
    speed = {k: tokens / statistics.median(v) for k, v in times.items()}
    flops = train_flops(gates, hidden, 2, vocab)
    row = {
        "case": f"train {name} 2x{hidden}" + (" adaptive" if adaptive else ""),
        "tokens_per_s": speed,
        "ratio": harness.ratio(times, "rnnkit", "recipe"),
        "recipe_peak_fraction": speed["recipe"] * flops / (peak * 1e9),
    }
    if not adaptive:  # the adaptive head does less than these FLOPs: no peak fraction for it
        row["rnnkit_peak_fraction"] = speed["rnnkit"] * flops / (peak * 1e9)
    return row


def evaluation_case(corpus, hidden, batch, args, device, peak) -> dict:
    vocab = len(corpus.vocab)
    torch.manual_seed(0)
    recipe = RecipeLM(vocab, hidden, 2, 0.2, "LSTM").to(device).eval()
    _, task = lm_task(corpus, "lstm", hidden, device)
    stream = corpus.valid[: args.eval_tokens]
    columns = batchify(stream, batch).to(device)

    @torch.no_grad()
    def recipe_eval() -> None:  # the example's evaluate(): bptt 35, the state carried
        hidden_state, criterion = None, nn.CrossEntropyLoss(reduction="sum")
        for _, x, y in bptt_windows(columns, BPTT):
            logits, hidden_state = recipe(x, hidden_state)
            criterion(logits.view(-1, vocab), y.reshape(-1)).item()

    model = task.model.eval()
    times = harness.interleaved(
        {"recipe": recipe_eval, "rnnkit": lambda: evaluate_lm(model, stream, batch, BPTT, device)},
        device,
        repeats=args.repeats,
        min_seconds=args.seconds,
    )
    tokens = (columns.shape[0] - 1) * columns.shape[1]
    speed = {k: tokens / statistics.median(v) for k, v in times.items()}
    flops = forward_flops(4, hidden, 2, vocab)
    return {
        "case": f"evaluate lstm 2x{hidden}" + ("" if batch == 10 else f" batch {batch}"),
        "tokens_per_s": speed,
        "ratio": harness.ratio(times, "rnnkit", "recipe"),
        "rnnkit_peak_fraction": speed["rnnkit"] * flops / (peak * 1e9),
        "recipe_peak_fraction": speed["recipe"] * flops / (peak * 1e9),
    }


def generation_case(corpus, args, device) -> list[dict]:
    _, task = lm_task(corpus, "lstm", 650, device)
    model = task.model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        generate(model, corpus.vocab, corpus.codec, "the", max_tokens=5, generator=g, stop_at_eos=False)
        start = time.perf_counter()
        generate(
            model,
            corpus.vocab,
            corpus.codec,
            "the",
            max_tokens=args.gen_tokens,
            generator=g,
            stop_at_eos=False,
        )
        latency = (time.perf_counter() - start) / args.gen_tokens
        words = corpus.vocab.decode(corpus.valid[:20_000].tolist())
        lines = " ".join(words).split("<eos>")[: args.score_lines]
        start = time.perf_counter()
        for line in lines:
            score_line(model, corpus.vocab, corpus.codec, line.strip())
        rate = len(lines) / (time.perf_counter() - start)
    return [
        {"case": "generate lstm 2x650 (ms per token)", "ms_per_token": 1000 * latency},
        {"case": "score lstm 2x650 (sentences/s, one at a time)", "sentences_per_s": rate},
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="../shared/data/ptb")
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--hidden", nargs="+", type=int, default=[200, 650])
    p.add_argument("--windows", type=int, default=8, help="bptt windows per timed training call")
    p.add_argument("--eval-tokens", type=int, default=20_000)
    p.add_argument(
        "--eval-batch",
        nargs="+",
        type=int,
        default=[10],
        help="evaluation batch sizes (the example's is 10; larger ones show what the batch buys)",
    )
    p.add_argument("--gen-tokens", type=int, default=200)
    p.add_argument("--score-lines", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per timed block")
    p.add_argument("--json", default="bench/out/quick.json")
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default malloc (otherwise the rnnkit command's settings, for both sides: "
        "bench/malloc.py measures their effect)",
    )
    args = p.parse_args()
    threshold = 0 if args.default_malloc else malloc.tune()
    device = harness.usable_or_skipped(args.device)
    if device is None:
        return 0
    corpus, source = ptb(args)
    columns = batchify(corpus.train, BATCH)[: args.windows * BPTT + 1].to(device)
    peak = harness.matmul_peak(device)
    print(
        f"data: {source}; device {device}; {torch.get_num_threads()} threads; "
        f"matmul peak {peak:.0f} GFLOP/s; "
        + (
            f"malloc: rnnkit's settings (mmap threshold {threshold >> 20} MiB)"
            if threshold
            else "malloc: default"
        )
    )
    print(f"{'case':34} {'recipe tok/s':>13} {'rnnkit tok/s':>13} {'rnnkit/recipe':>22} {'% of peak':>18}")
    rows = []

    def show(row: dict) -> None:
        rows.append(row)
        if "tokens_per_s" in row:
            r, s = row["ratio"], row["tokens_per_s"]
            frac = f"{100 * row['recipe_peak_fraction']:.0f}% / " + (
                f"{100 * row['rnnkit_peak_fraction']:.0f}%" if "rnnkit_peak_fraction" in row else "–"
            )
            print(
                f"{row['case']:34} {s['recipe']:13.0f} {s['rnnkit']:13.0f} "
                f"{r['median']:9.2f}x [{r['min']:.2f}, {r['max']:.2f}] {frac:>18}",
                flush=True,
            )
        else:
            print(f"{row['case']:48} {next(v for k, v in row.items() if k != 'case'):.2f}", flush=True)

    for hidden in args.hidden:
        for name in args.cells:
            show(training_case(name, corpus, columns, hidden, args, device, peak))
    vocab = len(corpus.vocab)
    cutoffs = f"--model.cutoffs={vocab // 5},{vocab // 2}"
    for hidden in args.hidden:  # the FLOP bound on the speed-up: ~2.5x at 2x200, ~1.6x at 2x650
        show(
            training_case(
                "lstm", corpus, columns, hidden, args, device, peak, ["--model.head=adaptive", cutoffs], True
            )
        )
    for batch in args.eval_batch:
        show(evaluation_case(corpus, 200, batch, args, device, peak))
    for row in generation_case(corpus, args, device):
        show(row)
    recipe = next((r for r in rows if r["case"] == "train lstm 2x200"), None)
    if recipe is not None and device.type == "cpu":
        speed = recipe["tokens_per_s"]["recipe"]
        ok = 3900 <= speed <= 5000
        print(
            f"recipe check: the 2x200 LSTM recipe ran at {speed:.0f} tokens/s "
            + (
                "(within the example's 3.9-5.0k measured here)"
                if ok
                else "(OUTSIDE the example's 3.9-5.0k: a busy or different machine, or rnnkit's malloc "
                "settings on both sides (--default-malloc compares with the example's figure); ratios "
                "still compare like with like)"
            )
        )
    payload = {
        "machine": harness.machine(device),
        "data": source,
        "peak_gflops": peak,
        "malloc_mmap_threshold": threshold,
        "rows": rows,
    }
    harness.write_json(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
