"""The train and evaluate verbs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.errors import RnnkitError
from rnnkit.tasks.lm import evaluate_lm
from rnnkit.training.loop import fit, pick_device
from rnnkit.training.run import load


def train(args: argparse.Namespace, overrides: list[str]) -> int:
    config = load_config(args.config, overrides)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise RnnkitError(f"--out {out}: the run directory exists and is not empty; choose another")
    files = locate(args.data, args.train_file, args.valid_file, args.test_file, config.data.valid_fraction)
    corpus = load_corpus(files, config.data.level, config.data.min_freq, config.data.max_size)
    print(
        f"rnnkit train: {config.model.cell} {config.model.num_layers}x{config.model.hidden_size}, "
        f"vocabulary {len(corpus.vocab)}, {corpus.train.numel()} training tokens -> {out}"
    )
    summary = fit(config, corpus, out, progress=not args.no_progress)
    for split, figures in summary.items():
        print(f"{split}: loss {figures['loss']:.4f}, ppl {figures['ppl']:.2f}, bits {figures['bits']:.4f}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    model, vocab, config = load(args.run)
    if args.data is None:
        raise RnnkitError("--data is required: the corpus to evaluate on")
    files = locate(args.data, valid_fraction=config.data.valid_fraction)
    corpus = load_corpus(files, config.data.level, vocab=vocab)
    stream = getattr(corpus, args.split)
    if stream is None:
        raise RnnkitError(f"--data {args.data}: has no {args.split} split")
    device = pick_device(config.train.device)
    figures = evaluate_lm(model.to(device), stream, config.train.eval_batch_size, config.train.bptt, device)
    if args.json:
        print(json.dumps({"split": args.split, **figures}))
    else:
        print(
            f"{args.split}: loss {figures['loss']:.4f}, ppl {figures['ppl']:.2f}, bits {figures['bits']:.4f}"
        )
    return 0
