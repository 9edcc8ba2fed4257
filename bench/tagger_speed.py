"""Tagger throughput on UD English EWT: training and prediction sentences/s (issue 6).

    python bench/tagger_speed.py --json bench/out/tagger-speed.json

Side by side in this process, interleaved (``harness.py``), on the same batches of EWT
training sentences (equal-length runs of 32, as ``rnnkit train`` makes them), each side
building its batch tensors from the sentences every time (the data path counts):

- a word-only 2x200 BiLSTM tagger (embeddings 100, dropout 0.4, Adam): rnnkit's
  ``train_epoch`` against a plain PyTorch recipe (nn.Embedding, a packed bidirectional
  nn.LSTM, nn.Linear, cross-entropy over the real tokens, Adam), the same shapes;
- the same two predicting the dev set (no grad, batches of 32 sorted by length);
- rnnkit's ``ewt-upos`` preset's model (with its character BiLSTM) on its own: the
  sentences/s a user of the preset sees.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from rnnkit.cli import malloc
from rnnkit.config import load_config
from rnnkit.tasks.tagging import Tagging, load_tagged
from rnnkit.training.loop import Cursor, History, make_optimizer, train_epoch

WORD_ONLY = ["--task=tag", "--model.cell=lstm", "--model.embed_size=100", "--model.hidden_size=200"]
WORD_ONLY += ["--model.num_layers=2", "--model.bidirectional=true", "--model.dropout=0.4"]
WORD_ONLY += [
    "--train.optimizer=adam",
    "--train.lr=0.002",
    "--train.batch_size=32",
    "--train.log_every=100000",
]


class RecipeTagger(nn.Module):
    def __init__(self, words: int, tags: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(words, 100, padding_idx=0)
        self.drop = nn.Dropout(0.4)
        self.rnn = nn.LSTM(100, 200, 2, bidirectional=True, dropout=0.4)
        self.out = nn.Linear(400, tags)

    def forward(self, words, lengths):
        packed = pack_padded_sequence(self.drop(self.embed(words)), lengths, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], total_length=words.shape[0])
        return self.out(self.drop(h))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/ud-english-ewt")
    p.add_argument("--batches", type=int, default=40, help="training batches per timed call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--json", default="bench/out/tagger-speed.json")
    args = p.parse_args()
    malloc.tune()
    if not Path(args.data).exists():
        print(f"skipped: no UD English EWT at {args.data}")
        return 0
    device = torch.device("cpu")
    corpus = load_tagged(args.data, "upos", 2)
    config = load_config(None, WORD_ONLY)
    torch.manual_seed(0)
    task = Tagging(config, corpus, device)
    step = max(1, len(task.train_batches) // args.batches)
    task.train_batches = task.train_batches[::step][: args.batches]  # short and long sentences alike
    sentences = sum(len(b) for b in task.train_batches)
    batches = [[corpus.train[i] for i in b] for b in task.train_batches]

    def collate(sents):  # the recipe's data path: ids, padding, tensors, every batch
        L = max(len(s.words) for s in sents)
        words = [[corpus.words.index(w) for w in s.words] + [0] * (L - len(s.words)) for s in sents]
        lengths = torch.tensor([len(s.words) for s in sents])
        if sents[0].tags is None:
            return torch.tensor(words).T, lengths, None
        tags = [[corpus.tags.index(t) for t in s.tags] + [0] * (L - len(s.tags)) for s in sents]
        return torch.tensor(words).T, lengths, torch.tensor(tags).T

    recipe = RecipeTagger(len(corpus.words), len(corpus.tags))
    recipe_opt = torch.optim.Adam(recipe.parameters(), lr=0.002)
    ours_opt = make_optimizer(task.model, config)

    def recipe_train() -> None:
        recipe.train()
        for sents in batches:
            words, lengths, tags = collate(sents)
            logits = recipe(words, lengths)
            mask = torch.arange(words.shape[0])[:, None] < lengths[None, :]
            loss = nn.functional.cross_entropy(logits[mask], tags[mask])
            recipe_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(recipe.parameters(), 5.0)
            recipe_opt.step()

    def ours_train() -> None:
        history = History(lr=0.002)
        train_epoch(task, ours_opt, config, history, Cursor(), lambda _: None, torch.Generator(), False)

    dev = corpus.valid

    @torch.no_grad()
    def recipe_predict() -> None:
        recipe.eval()
        order = sorted(range(len(dev)), key=lambda i: len(dev[i].words))
        for b in range(0, len(order), 32):
            words, lengths, _ = collate([dev[i] for i in order[b : b + 32]])
            best = recipe(words, lengths).argmax(-1)
            [best[: int(n), i].tolist() for i, n in enumerate(lengths)]

    def ours_predict() -> None:
        task.predict(dev)

    rows = []
    for case, variants, count in (
        ("train, word-only 2x200 BiLSTM", {"recipe": recipe_train, "rnnkit": ours_train}, sentences),
        ("predict dev, word-only 2x200 BiLSTM", {"recipe": recipe_predict, "rnnkit": ours_predict}, len(dev)),
    ):
        times = harness.interleaved(variants, device, repeats=args.repeats, min_seconds=args.seconds)
        speed = {k: count / statistics.median(v) for k, v in times.items()}
        r = harness.ratio(times, "rnnkit", "recipe")
        rows.append({"case": case, "sentences_per_s": speed, "ratio": r})
        print(
            f"{case:40} recipe {speed['recipe']:7.0f}  rnnkit {speed['rnnkit']:7.0f} sentences/s  "
            f"{r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]",
            flush=True,
        )
    preset = load_config("ewt-upos", ["--train.log_every=100000"])
    torch.manual_seed(0)
    full = Tagging(preset, corpus, device)
    full.train_batches = full.train_batches[::step][: args.batches]
    full_opt = make_optimizer(full.model, preset)

    def preset_train() -> None:
        train_epoch(
            full, full_opt, preset, History(lr=0.002), Cursor(), lambda _: None, torch.Generator(), False
        )

    times = harness.interleaved(
        {"train": preset_train, "predict": lambda: full.predict(dev)},
        device,
        repeats=args.repeats,
        min_seconds=args.seconds,
    )
    preset_row = {
        "case": "the ewt-upos preset (with characters)",
        "train_sentences_per_s": sentences / statistics.median(times["train"]),
        "predict_sentences_per_s": len(dev) / statistics.median(times["predict"]),
    }
    rows.append(preset_row)
    print(
        f"{preset_row['case']:40} train {preset_row['train_sentences_per_s']:.0f}, "
        f"predict {preset_row['predict_sentences_per_s']:.0f} sentences/s",
        flush=True,
    )
    harness.write_json(
        args.json, {"machine": harness.machine(device), "command": " ".join(sys.argv), "rows": rows}
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
