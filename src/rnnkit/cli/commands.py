"""The verbs on trained run directories: evaluate, predict, generate, score, next."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import BinaryIO

import torch
from tqdm import tqdm

from rnnkit.cli import checks
from rnnkit.data.conll import (
    detect_format,
    read_conll2003,
    read_conllu,
    read_raw,
    write_conll2003,
    write_conllu,
)
from rnnkit.data.sst import read_sentences
from rnnkit.errors import RnnkitError
from rnnkit.fileio import write_text_atomic
from rnnkit.inference import ClassifierRun, LanguageModelRun, TaggerRun, load, warn_unknown
from rnnkit.tasks.lm import RAW_TEXT_LEVELS
from rnnkit.tasks.tagging_metrics import format_label_report
from rnnkit.training.loop import pick_device
from rnnkit.training.run import recorded_data

__all__ = ["evaluate", "generate", "next_tokens", "predict", "recorded_data", "score"]


def evaluate(args: argparse.Namespace) -> int:
    """Figures of a trained run on a split of its corpus (or ``--data``); ``--report`` adds
    per-label scores, ``--confusion`` draws the confusion matrix (taggers and classifiers)."""
    trained = load(args.run, device=pick_device(args.device))
    report = trained.report(args.split, args.data) if args.report or args.confusion else None
    figures = trained.evaluate(args.split, args.data)
    if args.json:
        extra = {"report": report} if args.report else {}
        print(json.dumps({"split": args.split, **trained.fields(), **figures, **extra}))
    else:
        print(trained.describe(args.split, figures))
        if args.report and report is not None:
            print(
                "\n"
                + format_label_report(report)
                + ("\n" + report["conlleval"] if "conlleval" in report else "")
            )
    if args.confusion and report is not None:
        from rnnkit.analysis.plots import confusion  # matplotlib: only when a plot is asked for

        title = f"{Path(args.run).name}: {args.split}"
        confusion(report["labels"], report["confusion"], args.confusion, title)
    return 0


def predict(args: argparse.Namespace) -> int:
    """Tag a file: CoNLL-U in, CoNLL-U out (only the tag column changes); CoNLL-2003 in,
    its columns plus a predicted column out (``conlleval`` reads it; ``-DOCSTART-`` lines
    kept); raw text, one sentence a line, in, word TAB tag out; ``--json``: one object per
    sentence (its words and tags). The format is read from the file's first lines (a
    warning says so when its name suggests another). Classify a file (a classifier run):
    one line per sentence, see :func:`_classify`. ``-`` reads standard input."""
    trained = load(args.run, device=pick_device(args.device))
    if isinstance(trained, ClassifierRun):
        return _classify(args, trained)
    if not isinstance(trained, TaggerRun):
        raise RnnkitError(
            f"{args.run}: a {trained.config.task!r} run; predict needs a tagger or a classifier"
        )
    if args.format == "sst":
        raise RnnkitError("--format sst is for classifiers; this run is a tagger")
    column = trained.config.data.column
    name, text = _read_input(args.file)
    if _nothing_to_do(name, text, args.out):
        return 0
    fmt = args.format
    if fmt == "auto":
        fmt, warning = detect_format(name, text)
        if warning:
            print(f"rnnkit predict: warning: {warning}", file=sys.stderr)
    reader = {
        "conllu": lambda: read_conllu(name, column, text=text),
        "conll2003": lambda: read_conll2003(name, text=text),
        "text": lambda: read_raw(name, text=text),
    }
    sentences = reader[fmt]()
    if not sentences:
        raise RnnkitError(f"{name}: no sentences to tag")
    predictions = trained.tag(sentences)  # from the words alone, whatever gold the file holds
    out = Path(args.out) if args.out else None
    if args.json:
        _write_output(
            out,
            "".join(
                json.dumps({"line": s.line, "words": s.words, "tags": p}) + "\n"
                for s, p in zip(sentences, predictions)
            ),
        )
    elif fmt in ("conllu", "conll2003"):
        # conlleval expects the -DOCSTART- lines of CoNLL-2003 where they were
        write = write_conllu if fmt == "conllu" else partial(write_conll2003, docstart=True)
        if out is not None:
            write(sentences, predictions, out)
        else:  # the writers replace files atomically: write a private file, then print it
            with tempfile.TemporaryDirectory() as tmp:
                write(sentences, predictions, Path(tmp) / "tagged")
                sys.stdout.write((Path(tmp) / "tagged").read_text(encoding="utf-8"))
    else:
        _write_output(
            out,
            "".join(
                "".join(f"{w}\t{t}\n" for w, t in zip(s.words, p)) + "\n"
                for s, p in zip(sentences, predictions)
            ),
        )
    return 0


def _write_output(out: Path | None, text: str) -> None:
    """``text`` to the file ``out`` (atomically), or to standard output."""
    if out is not None:
        write_text_atomic(out, text)
    else:
        sys.stdout.write(text)


def _nothing_to_do(name: str, text: str, out: str | None) -> bool:
    """An empty input (``/dev/null``, an empty pipe) gives an empty output and a note."""
    if text.strip():
        return False
    print(f"rnnkit predict: note: {name} is empty: nothing to predict", file=sys.stderr)
    _write_output(Path(out) if out else None, "")
    return True


def _read_input(file: str) -> tuple[str, str]:
    """``(name, text)`` of a whole file (``-``: standard input; pipes and devices too), as
    strict UTF-8; an error names the line and byte offset of a bad byte."""
    name, stream, _ = _open_input(file)
    with stream:
        data = stream.read()
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise RnnkitError(f"{name}: line {line}, byte offset {err.start}: not UTF-8") from None


def generate(args: argparse.Namespace) -> int:
    checks.at_least("--num", args.num, 1)
    checks.at_least("--max-tokens", args.max_tokens, 1)
    checks.at_least("--top-k", args.top_k, 1)
    checks.positive_finite("--temperature", args.temperature)
    checks.probability_mass("--top-p", args.top_p)
    trained = _language_model(args)
    warn_unknown(trained.vocab, trained.codec.prompt_tokens(args.prompt))
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.num):
        options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
        options |= {"max_tokens": args.max_tokens, "generator": gen, "stop_at_eos": not args.no_stop}
        if args.json:
            print(json.dumps({"prompt": args.prompt, "text": trained.generate(args.prompt, **options)}))
        else:
            print(trained.generate(args.prompt, with_prompt=True, **options))
    return 0


def _language_model(args: argparse.Namespace) -> LanguageModelRun:
    """The run ``args.run`` on ``--device``: a language model, or a one-line error."""
    trained = load(args.run, device=pick_device(args.device))
    if not isinstance(trained, LanguageModelRun):
        raise RnnkitError(
            f"{args.run}: a {trained.config.task!r} run; this needs a language model (task 'lm')"
        )
    return trained


def score(args: argparse.Namespace) -> int:
    """Score a text line by line, ``--batch-size`` lines at a time: constant memory however
    long the text. Words not in the vocabulary are read and scored as ``<unk>``: each line
    says how many (``oov``), its tokens show ``<unk>`` where one was read, and standard
    error warns and totals them; the throughput goes there too at the end."""
    if args.batch_size < 1:
        raise RnnkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    trained = _language_model(args)
    vocab, codec = trained.vocab, trained.codec
    name, stream, size = _open_input(args.file)
    start = time.perf_counter()
    total, count, oov, number, offset = 0.0, 0, 0, 0, 0
    warned = False
    bar = tqdm(total=size, unit="B", unit_scale=True, disable=None, leave=False, file=sys.stderr)

    def flush(chunk: list[str]) -> None:
        nonlocal total, count, oov, warned
        out, unknown = [], []
        for line, result in zip(chunk, trained.score(chunk)):
            total += result["logprob"]
            count += len(result["surprisal_bits"])
            oov += result["oov"]
            unknown += result["unknown"]
            index = number - len(chunk) + len(out) + 1
            if args.json:
                if codec.level == "bpe":  # what each byte-level token reads as
                    result["decoded"] = [codec.token_text(t) for t in result["tokens"]]
                out.append(json.dumps({"line": index, **result}))
            else:
                out.append(
                    f"{index}\tlogprob {result['logprob']:.3f}\tppl {result['ppl']:.2f}\t"
                    f"oov {result['oov']}\t{line}"
                )
        bar.clear()
        if unknown and not warned:  # once, as soon as it is known: a pipe may stop reading early
            warn_unknown(vocab, unknown)
            warned = True
        sys.stdout.write("".join(o + "\n" for o in out))

    with stream:
        chunk: list[str] = []
        for raw in stream:
            number += 1
            try:
                chunk.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as err:
                raise RnnkitError(
                    f"{name}: line {number}, byte offset {offset + err.start}: not UTF-8"
                ) from None
            offset += len(raw)
            if len(chunk) == args.batch_size:
                flush(chunk)
                bar.update(offset - bar.n)
                chunk = []
        if chunk:
            flush(chunk)
    bar.close()
    seconds = max(time.perf_counter() - start, 1e-9)
    unseen = ""  # a vocabulary without <unk> (BPE) reads any text: nothing is out of it
    if vocab.unk is not None:
        unseen = f"; {oov} out of vocabulary ({100 * oov / max(count, 1):.2f}%, scored as {vocab.unk})"
    if number == 0:
        print(f"rnnkit score: note: {name} is empty: no lines to score", file=sys.stderr)
    elif not args.json and count:
        print(f"all {count} tokens: ppl {math.exp(-total / count):.2f}{unseen}")
    print(
        f"rnnkit score: {number} lines, {count} tokens{unseen}; {seconds:.1f} s "
        f"({number / seconds:.0f} lines/s, {count / seconds:.0f} tokens/s)",
        file=sys.stderr,
    )
    return 0


def _open_input(file: str) -> tuple[str, BinaryIO, int | None]:
    """``(name, binary stream, size or None)`` of a file to read once, front to back: ``-``
    is standard input; any readable file will do (a pipe, ``/dev/null``, a FIFO)."""
    if file == "-":
        return "standard input", sys.stdin.buffer, None
    path = Path(file)
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise RnnkitError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RnnkitError(f"{path}: is a directory, expected a file") from None
    except OSError as err:
        raise RnnkitError(f"{path}: cannot read it ({err.strerror})") from None
    return str(path), stream, (path.stat().st_size if path.is_file() else None)


def next_tokens(args: argparse.Namespace) -> int:
    checks.at_least("-k/--top-k", args.k, 1)
    trained = _language_model(args)
    codec = trained.codec
    warn_unknown(trained.vocab, codec.prompt_tokens(args.prefix))
    top = trained.next(args.prefix, args.k)
    if args.json:
        rows = [{"token": t, "p": p} for t, p in top]
        if codec.level == "bpe":  # byte-level tokens (Ġ<) with the text they stand for (" <")
            rows = [{"token": t, "text": codec.token_text(t), "p": p} for t, p in top]
        print(json.dumps(rows))
    else:
        for token, p in top:
            if codec.level in RAW_TEXT_LEVELS:  # quoted, so that a space or a newline shows
                token = json.dumps(codec.token_text(token), ensure_ascii=False)
            print(f"{p:.4f}\t{token}")
    return 0


def _classify(args: argparse.Namespace, trained: ClassifierRun) -> int:
    """``rnnkit predict`` of a classifier: SST trees or raw text, one sentence a line, in;
    ``class TAB name TAB probability TAB sentence`` lines (or JSON lines with every class's
    probability) out, in the file's order."""
    if args.format in ("conllu", "conll2003"):
        raise RnnkitError(f"--format {args.format} is for taggers; a classifier reads sst or text")
    name, text = _read_input(args.file)
    if _nothing_to_do(name, text, args.out):
        return 0
    sentences = read_sentences(name, args.format, text=text)
    if not sentences:
        raise RnnkitError(f"{name}: no sentences to classify")
    lines = []
    for words, result in zip(sentences, trained.classify(sentences)):
        best, p = result["class"], result["probs"]
        if args.json:
            lines.append(json.dumps({**result, "text": " ".join(words)}))
        else:
            lines.append(f"{best}\t{result['name']}\t{p[best]:.4f}\t{' '.join(words)}")
    _write_output(Path(args.out) if args.out else None, "".join(line + "\n" for line in lines))
    return 0
