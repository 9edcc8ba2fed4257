"""Sanity line: rnnkit's language-model training loop against the standard recipe.

The standard recipe is PyTorch's word_language_model example, written out here:
``nn.Embedding`` -> dropout -> ``nn.LSTM`` -> dropout -> ``nn.Linear`` -> cross entropy,
the hidden state detached between windows, ``clip_grad_norm_`` and a hand-written SGD
step. rnnkit runs its own ``train_epoch`` (the loop ``rnnkit train`` uses: fast path,
head, global-norm clipping with the norm logged, NaN guard, metrics) over the same number
of windows of the same shape. Both are timed interleaved in one process; the ratio is
tokens/s of rnnkit over the recipe (>1: rnnkit is faster).

    python bench/lm_step.py                       # Zaremba small and medium shapes, CPU
    python bench/lm_step.py --device cuda --json bench/out/lm-step-cuda.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from rnnkit.config import load_config
from rnnkit.data.batching import bptt_windows
from rnnkit.data.corpora import Corpus
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch

SHAPES = {  # name: (hidden, layers, bptt, dropout, lr, clip) as in the Zaremba presets
    "small": (200, 2, 20, 0.0, 20.0, 0.25),
    "medium": (650, 2, 35, 0.5, 35.0, 0.143),
}


class RecipeLM(nn.Module):
    """PyTorch's word_language_model example (RNNModel; rnn_type LSTM, GRU, RNN_TANH or RNN_RELU)."""

    def __init__(self, vocab: int, hidden: int, layers: int, dropout: float, rnn_type: str = "LSTM") -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, hidden)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(nn, rnn_type)(hidden, hidden, layers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(hidden, hidden, layers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        # the example's init_weights: word vectors and output layer ~ U(-0.1, 0.1), no output bias
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(output)), hidden


def recipe_epoch(model, columns, bptt, lr, clip, vocab) -> None:
    model.train()
    criterion = nn.CrossEntropyLoss()
    hidden = None
    for _, x, y in bptt_windows(columns, bptt):
        if hidden is not None:  # the example's repackage_hidden
            hidden = (
                hidden.detach() if isinstance(hidden, torch.Tensor) else tuple(h.detach() for h in hidden)
            )
        model.zero_grad()
        logits, hidden = model(x, hidden)
        loss = criterion(logits.view(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)


def time_shape(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    hidden, layers, bptt, dropout, lr, clip = SHAPES[name]
    torch.manual_seed(0)
    columns = torch.randint(args.vocab, (args.windows * bptt + 1, args.batch), device=device)
    recipe = RecipeLM(args.vocab, hidden, layers, dropout).to(device)
    config = load_config(
        None,
        [
            "--model.cell=lstm",
            f"--model.embed_size={hidden}",
            f"--model.hidden_size={hidden}",
            f"--model.num_layers={layers}",
            f"--model.dropout={dropout}",
            f"--train.lr={lr}",
            f"--train.clip_norm={clip}",
            f"--train.bptt={bptt}",
            f"--train.batch_size={args.batch}",
            f"--train.log_every={args.windows}",
        ],
    )
    corpus = Corpus(
        vocab=Vocab([f"w{i}" for i in range(args.vocab)]),
        codec=Codec("word"),
        train=columns.t().flatten(),
        valid=None,
        test=None,
    )
    task = LanguageModelling(config, corpus, device)
    ours = task.model
    optimizer = make_optimizer(ours, config)
    history = History(lr=lr)
    generator = torch.Generator().manual_seed(0)

    def rnnkit_epoch() -> None:
        train_epoch(task, optimizer, config, history, Cursor(), lambda _: None, generator, False)

    times = harness.interleaved(
        {"recipe": lambda: recipe_epoch(recipe, columns, bptt, lr, clip, args.vocab), "rnnkit": rnnkit_epoch},
        device,
        repeats=args.repeats,
        min_seconds=args.seconds,
    )
    tokens = args.windows * bptt * args.batch
    speed = {k: tokens / sorted(v)[len(v) // 2] for k, v in times.items()}
    r = harness.ratio(times, "rnnkit", "recipe")
    print(
        f"{name:8} {speed['recipe']:16.0f} {speed['rnnkit']:16.0f} "
        f"{r['median']:9.2f}x [{r['min']:.2f}, {r['max']:.2f}]"
    )
    return {"shape": name, "hidden": hidden, "bptt": bptt, "tokens_per_s": speed, "ratio": r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--vocab", type=int, default=10000, help="vocabulary size (PTB: 10000)")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--windows", type=int, default=10, help="windows per timed epoch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--json", default="bench/out/lm-step.json")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"{'shape':8} {'tokens/s recipe':>16} {'tokens/s rnnkit':>16} {'rnnkit / recipe':>22}")
    rows = [time_shape(name, args, device) for name in args.shapes]
    payload = {"machine": harness.machine(device), "batch": args.batch, "vocab": args.vocab, "rows": rows}
    harness.write_json(args.json, payload)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
