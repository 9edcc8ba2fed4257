"""The verbs on trained run directories: evaluate, predict, generate, score, next."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from rnnkit.data.conll import read_conll2003, read_conllu, read_raw, write_conll2003, write_conllu
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.sst import CLASS_NAMES, read_sentences
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.fileio import iter_lines, read_json, write_text_atomic
from rnnkit.tasks.classification import Classification, ClassifiedCorpus
from rnnkit.tasks.classification import corpus_for_run as corpus_for_classifier
from rnnkit.tasks.lm import UNITS, describe, evaluate_file, evaluate_lm, next_distribution, score_lines
from rnnkit.tasks.lm import generate as sample
from rnnkit.tasks.tagging import TaggedCorpus, Tagging, corpus_for_run, load_vocabularies
from rnnkit.tasks.tagging_metrics import format_label_report
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.loop import pick_device
from rnnkit.training.run import load, read_config


def evaluate(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if read_config(args.run).task in ("tag", "classify"):
        return _evaluate_task(args, device)
    if args.report or args.confusion:
        raise RnnkitError(
            f"{args.run}: a language model; --report and --confusion are for taggers and classifiers"
        )
    model, vocab, config, codec = load(args.run, device=device)
    if args.data is None:
        data = recorded_data(Path(args.run))
    else:
        data = {"data": args.data, "train": None, "valid": None, "test": None}
    files = locate(data["data"], data["train"], data["valid"], data["test"], config.data.valid_fraction)
    batch, bptt = config.train.eval_batch_size, config.train.bptt
    if files.valid_fraction is None:  # a file per split: streamed, in constant memory
        path = getattr(files, args.split)
        if path is None:
            raise RnnkitError(f"{data['data'] or files.train}: the corpus has no {args.split} split")
        figures = evaluate_file(model, path, codec, vocab, batch, bptt, device)
    else:  # one file split by a fraction: its validation part is read with it
        if args.split == "test":
            raise RnnkitError(f"{files.train}: one file split for validation has no test split")
        corpus = load_corpus(files, config.data.level, vocab=vocab, codec=codec)
        figures = evaluate_lm(model, corpus.valid, batch, bptt, device)
    if args.json:
        print(json.dumps({"split": args.split, "unit": UNITS[config.data.level], **figures}))
    else:
        print(describe(args.split, figures, config.data.level))
    return 0


def _evaluate_task(args: argparse.Namespace, device) -> int:
    """``rnnkit evaluate`` of a tagger or a classifier: its vocabularies, the data's splits."""
    run = Path(args.run)
    config = read_config(run)
    data = args.data or recorded_data(run)["data"]
    if config.task == "tag":
        task = Tagging(config, corpus_for_run(run, data, config.data.column), device)
    else:
        task = Classification(config, corpus_for_classifier(run, data), device)
    load_checkpoint(run / "best", task.model)
    if not task.has_split(args.split):
        raise RnnkitError(f"{data}: the corpus has no {args.split} split")
    figures = task.evaluate(args.split)
    report = task.report(args.split) if args.report or args.confusion else None
    if args.json:
        print(json.dumps({"split": args.split, **figures, **({"report": report} if args.report else {})}))
    else:
        print(task.describe(args.split, figures))
        if args.report:
            print(
                "\n"
                + format_label_report(report)
                + ("\n" + report["conlleval"] if "conlleval" in report else "")
            )
    if args.confusion:
        from rnnkit.analysis.plots import confusion  # matplotlib: only when a plot is asked for

        confusion(report["labels"], report["confusion"], args.confusion, f"{run.name}: {args.split}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Tag a file: CoNLL-U in, CoNLL-U out (only the tag column changes); CoNLL-2003 in,
    its columns plus a predicted column out (``conlleval`` reads it); raw text, one
    sentence a line, in, word TAB tag out. Classify a file (a classifier run): one line
    per sentence, see :func:`_classify`."""
    run = Path(args.run)
    config = read_config(run)
    if config.task == "classify":
        return _classify(args, run, config)
    if config.task != "tag":
        raise RnnkitError(f"{run}: a {config.task!r} run; predict needs a tagger or a classifier")
    if args.format == "sst":
        raise RnnkitError("--format sst is for classifiers; this run is a tagger")
    words, chars, tags, spans = load_vocabularies(run)
    task = Tagging(config, TaggedCorpus([], None, None, words, chars, tags, spans), pick_device(args.device))
    load_checkpoint(run / "best", task.model)
    fmt = args.format
    if fmt == "auto":
        fmt = (
            "conllu"
            if args.file.endswith(".conllu")
            else ("conll2003" if _looks_columnar(args.file) else "text")
        )
    reader = {
        "conllu": lambda p: read_conllu(p, config.data.column),
        "conll2003": read_conll2003,
        "text": read_raw,
    }
    sentences = reader[fmt](args.file)
    if not sentences:
        raise RnnkitError(f"{args.file}: no sentences to tag")
    for s in sentences:
        s.tags = None  # predict from the words alone, whatever gold the file holds
    predictions, _, _ = task.predict(sentences)
    out = Path(args.out) if args.out else None
    if fmt in ("conllu", "conll2003"):
        write = write_conllu if fmt == "conllu" else write_conll2003
        if out is not None:
            write(sentences, predictions, out)
        else:  # the writers replace files atomically: write a private file, then print it
            with tempfile.TemporaryDirectory() as tmp:
                write(sentences, predictions, Path(tmp) / "tagged")
                sys.stdout.write((Path(tmp) / "tagged").read_text(encoding="utf-8"))
    else:
        text = "".join(
            "".join(f"{w}\t{t}\n" for w, t in zip(s.words, p)) + "\n" for s, p in zip(sentences, predictions)
        )
        if out:
            write_text_atomic(out, text)
        else:
            sys.stdout.write(text)
    return 0


_ENTITY_TAG = re.compile(r"O|[BIES]-\S+")


def _looks_columnar(path: str) -> bool:
    """CoNLL-2003 rather than raw text: it opens with -DOCSTART-, or its first block (up to a
    blank line) has two or more lines that all have the same number (2 or more) of columns
    and end in an entity tag (``O``, ``B-PER``, ``I-ORG`` ...)."""
    block: list[list[str]] = []
    for _, line in iter_lines(path, "file"):
        if not line.strip():
            if block:
                break
            continue
        if line.startswith("-DOCSTART-"):
            return True
        block.append(line.split())
    widths = {len(fields) for fields in block}
    return (
        len(block) >= 2
        and len(widths) == 1
        and min(widths) >= 2
        and all(_ENTITY_TAG.fullmatch(fields[-1]) for fields in block)
    )


def recorded_data(run: Path) -> dict:
    """The corpus a run was trained on, as ``rnnkit train`` recorded it in data.json."""
    try:
        return json.loads((run / "data.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RnnkitError(
            f"{run}: cannot read data.json, where the run's corpus is recorded ({err}); pass --data"
        ) from None


def _warn_unknown(vocab, text: str, codec: Codec) -> None:
    unknown = sorted({t for t in codec.prompt_tokens(text) if t not in vocab})
    if unknown and vocab.unk is not None:
        print(
            f"rnnkit: warning: not in the vocabulary, read as {vocab.unk}: {' '.join(unknown[:10])}",
            file=sys.stderr,
        )


def generate(args: argparse.Namespace) -> int:
    model, vocab, _, codec = load(args.run, device=pick_device(args.device))
    _warn_unknown(vocab, args.prompt, codec)
    if args.num < 1 or args.max_tokens < 1:
        raise RnnkitError("--num and --max-tokens must be at least 1")
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.num):
        tokens = sample(
            model,
            vocab,
            codec,
            args.prompt,
            args.max_tokens,
            args.temperature,
            args.top_k,
            args.top_p,
            gen,
            stop_at_eos=not args.no_stop,
        )
        text = codec.join(tokens)
        print(
            json.dumps({"prompt": args.prompt, "text": text})
            if args.json
            else codec.join(codec.prompt_tokens(args.prompt) + tokens)
        )
    return 0


def score(args: argparse.Namespace) -> int:
    """Score a text line by line, ``--batch-size`` lines at a time: constant memory however
    long the text; the throughput goes to standard error at the end."""
    if args.batch_size < 1:
        raise RnnkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, vocab, _, codec = load(args.run, device=pick_device(args.device))
    if args.file == "-":
        stream, size = sys.stdin.buffer, None
    else:
        path = Path(args.file)
        if not path.is_file():
            raise RnnkitError(f"{path}: no such file")
        stream, size = path.open("rb"), path.stat().st_size
    start = time.perf_counter()
    total, count, number, offset = 0.0, 0, 0, 0
    bar = tqdm(total=size, unit="B", unit_scale=True, disable=None, leave=False, file=sys.stderr)

    def flush(chunk: list[str]) -> None:
        nonlocal total, count
        out = []
        for line, result in zip(chunk, score_lines(model, vocab, codec, chunk)):
            total += result["logprob"]
            count += len(result["surprisal_bits"])
            index = number - len(chunk) + len(out) + 1
            if args.json:
                out.append(json.dumps({"line": index, **result}))
            else:
                out.append(f"{index}\tlogprob {result['logprob']:.3f}\tppl {result['ppl']:.2f}\t{line}")
        bar.clear()
        sys.stdout.write("".join(o + "\n" for o in out))

    with stream:
        chunk: list[str] = []
        for raw in stream:
            number += 1
            try:
                chunk.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as err:
                raise RnnkitError(
                    f"{args.file}: line {number}, byte offset {offset + err.start}: not UTF-8"
                ) from None
            offset += len(raw)
            if len(chunk) == args.batch_size:
                flush(chunk)
                bar.update(offset - bar.n)
                chunk = []
        if chunk:
            flush(chunk)
    bar.close()
    seconds = time.perf_counter() - start
    if not args.json and count:
        print(f"all {count} tokens: ppl {math.exp(-total / count):.2f}")
    print(
        f"rnnkit score: {number} lines, {count} tokens in {seconds:.1f} s "
        f"({number / seconds:.0f} lines/s, {count / seconds:.0f} tokens/s)",
        file=sys.stderr,
    )
    return 0


def next_tokens(args: argparse.Namespace) -> int:
    model, vocab, _, codec = load(args.run, device=pick_device(args.device))
    _warn_unknown(vocab, args.prefix, codec)
    top = next_distribution(model, vocab, codec, args.prefix, args.k)
    if args.json:
        print(json.dumps([{"token": t, "p": p} for t, p in top]))
    else:
        for token, p in top:
            print(f"{p:.4f}\t{token}")
    return 0


def _classify(args: argparse.Namespace, run: Path, config) -> int:
    """``rnnkit predict`` of a classifier: SST trees or raw text, one sentence a line, in;
    ``class TAB name TAB probability TAB sentence`` lines (or JSON lines with every class's
    probability) out, in the file's order."""
    if args.format in ("conllu", "conll2003"):
        raise RnnkitError(f"--format {args.format} is for taggers; a classifier reads sst or text")
    saved = read_json(run / "classification.json", missing=f"{run}: not a classifier run")
    classes = int(saved["classes"])
    corpus = ClassifiedCorpus([], None, None, Vocab.from_json(saved["words"]), classes)
    task = Classification(config, corpus, pick_device(args.device))
    load_checkpoint(run / "best", task.model)
    sentences = read_sentences(args.file, args.format)
    if not sentences:
        raise RnnkitError(f"{args.file}: no sentences to classify")
    probs = task.log_probs(sentences).exp()
    names = CLASS_NAMES[classes]
    lines = []
    for words, p in zip(sentences, probs.tolist()):
        best = max(range(classes), key=p.__getitem__)
        if args.json:
            lines.append(
                json.dumps({"class": best, "name": names[best], "probs": p, "text": " ".join(words)})
            )
        else:
            lines.append(f"{best}\t{names[best]}\t{p[best]:.4f}\t{' '.join(words)}")
    text = "".join(line + "\n" for line in lines)
    if args.out:
        write_text_atomic(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0
