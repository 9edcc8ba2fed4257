"""``rnnkit train``: a run directory from a corpus and settings, or ``--resume`` of one."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from rnnkit.cli.commands import recorded_data
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.text import Codec, word_key
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic
from rnnkit.models.config import check_task_options
from rnnkit.tasks.classification import Classification, load_classified
from rnnkit.tasks.classification import corpus_for_run as corpus_for_classifier
from rnnkit.tasks.lm import UNITS, describe
from rnnkit.tasks.tagging import Tagging, load_tagged, load_vocabularies
from rnnkit.training.checkpoint import RECORD
from rnnkit.training.distributed import is_main_process
from rnnkit.training.loop import fit
from rnnkit.training.progress import duration
from rnnkit.training.run import read_config

NOT_A_RUN_YET = {"data.json", ".lock"}
"""What a run directory holds when its run was killed before it began: ``--out`` may reuse it."""


def train(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.resume:
        return _resume(args, overrides)
    if not args.out:
        raise RnnkitError("--out RUN_DIR is required (or --resume RUN_DIR)")
    config = load_config(args.config, overrides)
    check_task_options(config.model, config.task, config.data)  # before any data is read
    out = Path(args.out)
    main = is_main_process()  # distributed: rank 0 alone checks, writes and prints
    if main and out.exists() and any(p.name not in NOT_A_RUN_YET for p in out.iterdir()):
        raise RnnkitError(
            f"--out {out}: the run directory exists and is not empty; choose another or --resume it"
        )
    data = {
        "data": args.data
        if args.data is None or not Path(args.data).exists()
        else str(Path(args.data).resolve()),
        **{
            k: None if v is None else str(Path(v).resolve())
            for k, v in (("train", args.train_file), ("valid", args.valid_file), ("test", args.test_file))
        },
    }
    corpus = _corpus(data, config)
    shape = f"{config.model.cell} {config.model.num_layers}x{config.model.hidden_size}"
    if config.task == "tag":
        what = f"{len(corpus.words)} words, {len(corpus.tags)} tags, {len(corpus.train)} training sentences"
    elif config.task == "classify":
        what = f"{len(corpus.words)} words, {corpus.classes} classes, {len(corpus.train)} training examples"
    else:
        what = f"vocabulary {len(corpus.vocab)}, {corpus.train.numel()} training tokens"
    if main:
        print(
            f"rnnkit train: {config.task}, {shape}, {what} -> {out}",
            file=sys.stderr if args.json else sys.stdout,
        )
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "data.json", json.dumps(data, indent=1) + "\n")
    return _report(_train(config, corpus, out, args), config, args.json, out)


def _train(config, corpus, run: Path, args: argparse.Namespace, resume: bool = False) -> dict:
    """:func:`fit`; on Ctrl-C, first the command that continues the run (main says "interrupted")."""
    try:
        return fit(config, corpus, run, progress=not args.no_progress, resume=resume)
    except KeyboardInterrupt:
        if is_main_process():
            print(_how_to_continue(run), file=sys.stderr, flush=True)
        raise


def _how_to_continue(run: Path) -> str:
    """What to type after an interrupted training of ``run`` (the path as the user gave it)."""
    command = f"rnnkit train --resume {shlex.quote(str(run))}"
    try:
        record = json.loads((run / "last" / RECORD).read_text(encoding="utf-8"))
        where = f"from its last checkpoint (step {record['step']})"
    except (OSError, ValueError, KeyError, TypeError):
        where = "from the beginning (stopped before its first checkpoint)"
        if not (run / "config.json").exists():
            return "rnnkit train: stopped before the run's settings were saved: start it again the same way"
    return f"rnnkit train: stopped; to continue {where}: {command}"


def _corpus(data: dict, config, vocab=None, codec=None):
    if config.task == "tag":
        if data["data"] is None:
            raise RnnkitError(
                "a tagger trains on --data ud-english-ewt, or --data DIR (a UD treebank or CoNLL-2003 "
                "directory)"
            )
        key = word_key(config.data.lowercase, config.data.zero_digits)
        return load_tagged(data["data"], config.data.column, config.data.min_freq, key)
    if config.task == "classify":
        if data["data"] is None:
            raise RnnkitError(
                "a classifier trains on --data sst, or --data DIR (an SST directory of PTB trees)"
            )
        d = config.data
        return load_classified(
            data["data"], d.classes, d.phrases, d.min_freq, word_key(d.lowercase, d.zero_digits)
        )
    files = locate(data["data"], data["train"], data["valid"], data["test"], config.data.valid_fraction)
    return load_corpus(
        files, config.data.level, config.data.min_freq, config.data.max_size, vocab=vocab, codec=codec
    )


def _resume(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.out or args.data or args.train_file or args.config or overrides:
        raise RnnkitError("--resume RUN_DIR takes no other settings: the run directory holds them all")
    run = Path(args.resume)
    if not (run / "config.json").exists() and (run / "data.json").exists():
        raise RnnkitError(
            f"{run}: killed before its settings were saved, so nothing was trained: start it again "
            "with the same rnnkit train --out command"
        )
    config = read_config(run)
    data = recorded_data(run)
    if config.task == "classify":
        corpus = _corpus(data, config)
        if corpus_for_classifier(run, data["data"]).words != corpus.words:
            raise RnnkitError(f"{run}: the corpus at {data['data']} no longer gives the run's vocabulary")
    elif config.task == "tag":
        corpus = _corpus(data, config)
        saved = load_vocabularies(run)[:3]
        if saved != (corpus.words, corpus.chars, corpus.tags):
            raise RnnkitError(f"{run}: the corpus at {data['data']} no longer gives the run's vocabularies")
    else:
        codec = Codec.load(run, config.data.level)
        corpus = _corpus(data, config, vocab=Vocab.load(run / "vocab.json"), codec=codec)
    if is_main_process():
        print(f"rnnkit train: resuming {run}", file=sys.stderr if args.json else sys.stdout)
    summary = _train(config, corpus, run, args, resume=True)
    return _report(summary, config, args.json, run)


def _report(summary: dict, config, as_json: bool = False, run: Path | None = None) -> int:
    """The final figures (one JSON line with ``as_json``), then how long it took, where the
    best checkpoint is and what to try next (on stderr with ``as_json``)."""
    if not summary:  # a distributed run's other ranks: rank 0 reports
        return 0
    figures = {k: v for k, v in summary.items() if k != "run"}
    if as_json:
        unit = {} if config.task in ("tag", "classify") else {"unit": UNITS[config.data.level]}
        print(json.dumps({**unit, **summary}), flush=True)
    elif config.task in ("tag", "classify"):
        describe_split = Tagging.describe if config.task == "tag" else Classification.describe
        for split, values in figures.items():
            print(describe_split(split, values))
    else:
        for split, values in figures.items():
            print(describe(split, values, config.data.level))
    if run is not None and "run" in summary:
        print(_afterword(summary, config.task, run), file=sys.stderr if as_json else sys.stdout)
    return 0


def _afterword(summary: dict, task: str, run: Path) -> str:
    """Wall time, the best checkpoint, and the commands to try next on the run."""
    facts, quoted = summary["run"], shlex.quote(str(run))
    took = duration(facts["session_seconds"])
    if facts.get("sessions", 1) > 1:
        took += f" ({duration(facts['seconds'])} over {facts['sessions']} sessions)"
    best = facts["best"]
    split = "test" if "test" in summary else "valid"
    if task == "lm":
        commands = [f"rnnkit evaluate {quoted} --split {split}", f"rnnkit generate {quoted}"]
    else:
        commands = [f"rnnkit evaluate {quoted} --split {split} --report", f"rnnkit predict {quoted} FILE"]
    return (
        f"trained in {took}; best checkpoint: {run / 'best'} (epoch {best['epoch']}, step {best['step']}); "
        f"details: {run / 'summary.json'}\n"
        f"next: {commands[0]}\n      {commands[1]}"
    )
