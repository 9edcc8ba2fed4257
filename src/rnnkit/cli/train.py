"""``rnnkit train``: a run directory from a corpus and settings, or ``--resume`` of one."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from rnnkit import presets
from rnnkit.config import RunConfig, load_config, scaled_cutoffs
from rnnkit.errors import RnnkitError
from rnnkit.fileio import make_dir, write_text_atomic
from rnnkit.models.config import check_task_options
from rnnkit.tasks import task_kind
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.training.distributed import is_main_process
from rnnkit.training.loop import fit
from rnnkit.training.memory import check_memory
from rnnkit.training.progress import duration
from rnnkit.training.run import check_edits, read_config, recorded_data
from rnnkit.training.rundir import CONFIG, NOT_A_RUN_YET, RunDir


def train(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.resume:
        return _resume(args, overrides)
    if getattr(args, "accept_edits", False):
        raise RnnkitError("--accept-edits is for --resume RUN_DIR (a new run has no edits to accept)")
    if not args.out:
        raise RnnkitError("--out RUN_DIR is required (or --resume RUN_DIR)")
    config = load_config(args.config, overrides)
    check_task_options(config.model, config.task, config.data)  # before any data is read
    out = Path(args.out)
    main = is_main_process()  # distributed: rank 0 alone checks, writes and prints
    # What a run directory holds when its run was killed before it began: --out may reuse it.
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
    kind = task_kind(config.task)
    corpus = kind.load_corpus(data, config)
    check_memory(config, corpus)  # refused with the numbers before the model is built
    shape = f"{config.model.cell} {config.model.num_layers}x{config.model.hidden_size}"
    what = kind.summary(corpus)
    if main:
        print(
            f"rnnkit train: {config.task}, {shape}, {what} -> {out}",
            file=sys.stderr if args.json else sys.stdout,
        )
        for note in preset_notes(args.config, config, corpus):
            print(f"rnnkit train: {note}", file=sys.stderr)
        make_dir(out)
        write_text_atomic(RunDir(out).data, json.dumps(data, indent=1) + "\n")
    return _report(_train(config, corpus, out, args), config, args.json, out)


def preset_notes(preset: str | None, config: RunConfig, corpus: Any) -> list[str]:
    """What a language model's settings assumed that its corpus does not hold: the adaptive
    softmax's cutoffs scaled to another vocabulary (a note), a corpus far (over 2x either
    way) from the one a preset was calibrated on (a warning)."""
    if task_kind(config.task) is not LanguageModelling:
        return []
    notes, m = [], config.model
    words, tokens = len(corpus.vocab), int(corpus.train.numel())
    if m.head == "adaptive" and m.cutoffs_vocab not in (None, words):
        notes.append(
            f"note: the adaptive softmax's cutoffs {m.cutoffs} were set for {m.cutoffs_vocab} words; "
            f"scaled to {scaled_cutoffs(m, words)} for this vocabulary of {words}"
        )
    calibrated = presets.calibration(preset) if preset else None
    if calibrated is not None:
        name, had_words, had_tokens = calibrated
        far = [
            f"{have} {what} ({have / had:.2g}x)"
            for what, have, had in (("words", words, had_words), ("training tokens", tokens, had_tokens))
            if not 0.5 <= have / had <= 2
        ]
        if far:
            notes.append(
                f"warning: preset {preset} was calibrated on {name} ({had_words} words, {had_tokens} "
                f"training tokens); this corpus has {' and '.join(far)}: its time and perplexity "
                "figures do not carry over"
            )
    return notes


def _train(config, corpus, run: Path, args: argparse.Namespace, resume: bool = False) -> dict:
    """:func:`fit`; on Ctrl-C or SIGTERM, first the command that continues the run (main says
    "interrupted" or "stopped (SIGTERM)")."""
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
        record = json.loads(RunDir(run).record("last").read_text(encoding="utf-8"))
        where = f"from its last checkpoint (step {record['step']})"
    except (OSError, ValueError, KeyError, TypeError):
        where = "from the beginning (stopped before its first checkpoint)"
        if not RunDir(run).config.exists():
            return "rnnkit train: stopped before the run's settings were saved: start it again the same way"
    return f"rnnkit train: stopped; to continue {where}: {command}"


def _resume(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.out or args.data or args.train_file or args.config or overrides:
        raise RnnkitError(
            f"--resume {args.resume} takes no other settings: its {CONFIG} holds them all (to change "
            "train.* settings, edit that file and add --accept-edits)"
        )
    run = Path(args.resume)
    if not RunDir(run).config.exists() and RunDir(run).data.exists():
        raise RnnkitError(
            f"{run}: killed before its settings were saved, so nothing was trained: start it again "
            "with the same rnnkit train --out command"
        )
    config = read_config(run)
    edits = check_edits(run, config, getattr(args, "accept_edits", False))  # before any data is read
    corpus = task_kind(config.task).resume_corpus(run, recorded_data(run), config)
    if is_main_process():
        say = sys.stderr if args.json else sys.stdout
        if edits is not None:
            print(f"rnnkit train: {edits.path} was edited: {edits}; training on with them", file=say)
        print(f"rnnkit train: resuming {run}", file=say)
    summary = _train(config, corpus, run, args, resume=True)
    return _report(summary, config, args.json, run)


def _report(summary: dict, config: RunConfig, as_json: bool = False, run: Path | None = None) -> int:
    """The final figures (one JSON line with ``as_json``), then how long it took, where the
    best checkpoint is and what to try next (on stderr with ``as_json``)."""
    if not summary:  # a distributed run's other ranks: rank 0 reports
        return 0
    kind = task_kind(config.task)
    figures = {k: v for k, v in summary.items() if k != "run"}
    if as_json:
        print(json.dumps({**kind.fields(config), **summary}), flush=True)
    else:
        for split, values in figures.items():
            print(kind.line(config, split, values))
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
    commands = task_kind(task).next_commands(quoted, split)
    paths = RunDir(run)
    return (
        f"trained in {took}; best checkpoint: {paths.best} (epoch {best['epoch']}, step {best['step']}); "
        f"details: {paths.summary}\n"
        f"next: {commands[0]}\n      {commands[1]}"
    )
