"""The verbs on trained run directories: evaluate, predict, generate, score, next."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import torch
from tqdm import tqdm

from rnnkit.cli import checks
from rnnkit.data.conll import (
    SNIFF_BYTES,
    Sentence,
    detect_format,
    read_conll2003,
    read_conllu,
    write_conll2003,
    write_conllu,
)
from rnnkit.data.lines import LINE_LIMIT, Piece, read_pieces
from rnnkit.data.sst import parse_tree, read_sentences
from rnnkit.errors import RnnkitError
from rnnkit.fileio import open_binary, write_text_atomic
from rnnkit.inference import (
    LISTED_TOKENS,
    ClassifierRun,
    LanguageModelRun,
    LineScore,
    TaggerRun,
    Trained,
    load,
    warn_unknown,
)
from rnnkit.tasks.classification import MAX_WORDS as CLASSIFY_MAX_WORDS
from rnnkit.tasks.lm import RAW_TEXT_LEVELS
from rnnkit.tasks.tagging import MAX_WORDS as TAG_MAX_WORDS
from rnnkit.tasks.tagging import warn_long
from rnnkit.tasks.tagging_metrics import format_label_report
from rnnkit.textsafe import printable
from rnnkit.training.loop import pick_device
from rnnkit.training.run import recorded_data

__all__ = ["evaluate", "export", "generate", "next_tokens", "predict", "recorded_data", "score"]


def evaluate(args: argparse.Namespace) -> int:
    """Figures of a trained run on a split of its corpus (or ``--data``); ``--report`` adds
    per-label scores, ``--confusion`` draws the confusion matrix (taggers and classifiers);
    ``--adapt`` reads a language model's split as one stream it adapts to (:mod:`rnnkit.adapt`)."""
    from rnnkit.cli.adapt import given_settings

    settings = given_settings(args)  # before any model is loaded
    if args.adapt is not None:
        return _evaluate_adapted(args, settings)
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


def _evaluate_adapted(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """``evaluate --adapt``: the adapted figures, the model's own and what the adaptation cost."""
    if args.report or args.confusion:
        raise RnnkitError("--report and --confusion are for taggers and classifiers, not with --adapt")
    trained = load(args.run, device=pick_device(args.device))
    if not isinstance(trained, LanguageModelRun):
        raise RnnkitError(
            f"{args.run}: a {trained.config.task!r} run; --adapt needs a language model (task 'lm')"
        )
    figures = trained.evaluate(args.split, args.data, args.adapt, not args.no_progress, **settings)
    if args.json:
        print(json.dumps({"split": args.split, **trained.fields(), **figures}))
        return 0
    adapt = figures["adapt"]
    print(trained.describe(args.split, figures))
    cost = f"{adapt['seconds']:.1f} s, {adapt['tokens_per_s']:.0f} tokens/s"
    if "stats_tokens_read" in adapt:
        cost += (
            f", after {adapt['stats_seconds']:.1f} s of gradient statistics on {adapt['stats_tokens_read']} "
            "training tokens"
        )
    shown = {k: v for k, v in adapt.items() if k in ("dynamic", "cache")}
    print(
        f"adapted with {adapt['methods']} (settings: {adapt['source']}; {json.dumps(shown)}); the model "
        f"alone on the same stream: ppl {figures['model_ppl']:.2f}; {cost}"
    )
    return 0


def predict(args: argparse.Namespace) -> int:
    """Tag a file: CoNLL-U in, CoNLL-U out (only the tag column changes); CoNLL-2003 in,
    its columns plus a predicted column out (``conlleval`` reads it; ``-DOCSTART-`` lines
    kept); raw text, one sentence a line, in, word TAB tag out (control characters escaped,
    see :func:`rnnkit.textsafe.printable`); ``--json``: one object per sentence (its words
    and tags). The format is read from the file's first lines (a warning says so when its
    name suggests another). Classify a file (a classifier run): one line per sentence, see
    :func:`_classify`. ``-`` reads standard input.

    Raw text is read and tagged as it streams, in bounded memory; a sentence of more than
    ``--max-words`` words is tagged in parts of that many (a warning names the first such
    line; with ``--json`` each part is an object with its ``part`` number)."""
    max_words = getattr(args, "max_words", None)
    checks.at_least("--max-words", max_words, 1)
    trained = _load(args)
    if isinstance(trained, ClassifierRun):
        return _classify(args, trained, max_words or CLASSIFY_MAX_WORDS)
    if not isinstance(trained, TaggerRun):
        raise RnnkitError(
            f"{args.run}: a {trained.config.task!r} run; predict needs a tagger or a classifier"
        )
    if args.format == "sst":
        raise RnnkitError("--format sst is for classifiers; this run is a tagger")
    max_words = max_words or TAG_MAX_WORDS
    name, stream, _ = _open_input(args.file)
    output = _Output(args.out)
    with stream:
        pieces = read_pieces(stream, name, LINE_LIMIT)
        head, sniffed, ended = _sniff(pieces)
        if ended and not sniffed.strip():
            print(f"rnnkit predict: note: {name} is empty: nothing to predict", file=sys.stderr)
            output.close()
            return 0
        fmt = args.format
        if fmt == "auto":
            fmt, warning = detect_format(name, sniffed)
            if warning:
                print(f"rnnkit predict: warning: {warning}", file=sys.stderr)
        if fmt == "text":
            _tag_text(args, trained, name, itertools.chain(head, pieces), output, max_words)
            return 0
        # the CoNLL formats are read whole (a sentence is many lines; the writers keep each)
        text = sniffed + "".join(p.text + (p.end or "") for p in pieces)
    _tag_conll(args, trained, name, fmt, text, output, max_words)
    return 0


def _load(args: argparse.Namespace) -> Trained:
    """The run ``args.run`` on ``--device``; with ``--quantize int8``, on the CPU with its
    model in int8 (:func:`rnnkit.export.quantize.quantize_run`), used by every method the
    verb calls. (``main`` has refused ``--quantize`` with a device other than the CPU.)"""
    quantize = getattr(args, "quantize", None)
    trained = load(args.run, device=pick_device("cpu" if quantize else args.device))
    if quantize:
        from rnnkit.export.quantize import quantize_run

        quantize_run(trained, quantize)
    return trained


def _tag_conll(
    args: argparse.Namespace,
    trained: TaggerRun,
    name: str,
    fmt: str,
    text: str,
    output: _Output,
    max_words: int,
) -> None:
    """Tag a CoNLL-U or CoNLL-2003 text and write it back with the predicted tags (or JSON)."""
    if fmt == "conllu":
        sentences = read_conllu(name, trained.config.data.column, text=text)
    else:
        sentences = read_conll2003(name, text=text)
    if not sentences:
        raise RnnkitError(f"{name}: no sentences to tag")
    warn_long(sentences, "tagged in parts", max_words)
    predictions = trained.tag(sentences, max_words)  # from the words alone, whatever gold the file holds
    if args.json:
        for s, p in zip(sentences, predictions):
            output.write(json.dumps({"line": s.line, "words": s.words, "tags": p}) + "\n")
        output.close()
        return
    # conlleval expects the -DOCSTART- lines of CoNLL-2003 where they were
    write = write_conllu if fmt == "conllu" else partial(write_conll2003, docstart=True)
    if args.out:
        write(sentences, predictions, Path(args.out))
    else:  # the writers replace files atomically: write a private file, then print it
        with tempfile.TemporaryDirectory() as tmp:
            write(sentences, predictions, Path(tmp) / "tagged")
            sys.stdout.write((Path(tmp) / "tagged").read_text(encoding="utf-8"))


def _sniff(pieces: Iterator[Piece]) -> tuple[list[Piece], str, bool]:
    """The first pieces of an input, up to :data:`rnnkit.data.conll.SNIFF_BYTES` (and a
    piece), for its format to be read from: ``(pieces, their text, whether that is all)``."""
    head: list[Piece] = []
    seen = 0
    for piece in pieces:
        head.append(piece)
        seen += piece.size + len(piece.end or "")
        if seen >= SNIFF_BYTES:
            return head, "".join(p.text + (p.end or "") for p in head), False
    return head, "".join(p.text + (p.end or "") for p in head), True


SENTENCES_AT_ONCE = 256
"""``predict`` tags or classifies this many sentences (or parts) at a time, as they are read."""


class _Output:
    """Where ``predict`` writes: standard output as the predictions come, or ``--out``,
    written atomically once all are in (a failure leaves no half file)."""

    def __init__(self, out: str | None) -> None:
        self.out = Path(out) if out else None
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        if self.out is None:
            sys.stdout.write(text)
        else:
            self.parts.append(text)

    def close(self) -> None:
        if self.out is not None:
            write_text_atomic(self.out, "".join(self.parts))


class _LongLines:
    """``predict``'s warnings about lines of more than ``--max-words`` words: the first
    named as soon as it is seen, how many in all at the end."""

    def __init__(self, name: str, max_words: int, done: str) -> None:
        self.name, self.max_words, self.done = name, max_words, done
        self.count = 0

    def saw(self, number: int, words: int | None = None) -> None:
        """Line ``number`` has more than ``--max-words`` words (``words`` when known)."""
        self.count += 1
        if self.count == 1:
            many = f"more words than --max-words {self.max_words}"
            if words is not None:
                many = f"{words} words, more than --max-words {self.max_words}"
            print(
                f"rnnkit predict: warning: {self.name}: line {number} has {many}: {self.done}",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.count > 1:
            print(
                f"rnnkit predict: warning: {self.count} lines in all had more than --max-words "
                f"{self.max_words} words: {self.done}",
                file=sys.stderr,
            )


def _finish(name: str, long: _LongLines, output: _Output, predicted: int) -> None:
    """The end of ``predict`` on sentences read as they stream (tagged or classified): the
    total of long lines, a note when ``predicted`` is 0 (no line held a word), the output
    written."""
    long.close()
    if not predicted:
        print(f"rnnkit predict: note: {name} has no words: nothing to predict", file=sys.stderr)
    output.close()


def _tag_text(
    args: argparse.Namespace,
    trained: TaggerRun,
    name: str,
    pieces: Iterator[Piece],
    output: _Output,
    max_words: int,
) -> None:
    """Tag raw text, one sentence a line, as it is read: lines come in pieces (a long line
    never whole) and sentences of more than ``max_words`` words in parts of that many."""
    long = _LongLines(name, max_words, f"tagged in parts of {max_words} words")
    waiting: list[tuple[Sentence, int, bool]] = []  # (sentence or part, part number or 0, ends its line)
    held = 0  # words waiting
    words: list[str] = []
    part = 0
    tagged = 0

    def flush() -> None:
        nonlocal waiting, held, tagged
        if not waiting:
            return
        predictions = trained.tag([s for s, _, _ in waiting], max_words)
        for (s, number, ends), tags in zip(waiting, predictions):
            if args.json:
                record: dict[str, Any] = {"line": s.line, "words": s.words, "tags": tags}
                output.write(json.dumps(record | ({"part": number} if number else {})) + "\n")
            else:
                rows = "".join(f"{printable(w)}\t{t}\n" for w, t in zip(s.words, tags))
                output.write(rows + ("\n" if ends else ""))
        tagged += len(waiting)
        waiting, held = [], 0

    for piece in pieces:
        if piece.first:
            words, part = [], 0
        words += piece.text.split()
        start = 0
        while len(words) - start > max_words:  # more than a part: the line is cut
            if part == 0:
                long.saw(piece.number)
            part += 1
            waiting.append(
                (Sentence(words[start : start + max_words], None, name, piece.number), part, False)
            )
            start += max_words
            held += max_words
        words = words[start:]
        if piece.last and words:
            part = part + 1 if part else 0
            waiting.append((Sentence(words, None, name, piece.number), part, True))
            held += len(words)
        if len(waiting) >= SENTENCES_AT_ONCE or held >= SENTENCES_AT_ONCE * max_words:
            flush()
    flush()
    _finish(name, long, output, tagged)


MAX_SAMPLES = 10_000
"""``generate --num`` at most: each sample is printed as soon as it is drawn, so the ceiling
bounds time, not memory; more samples are another run with another ``--seed``."""

MAX_GENERATED = 100_000
"""``generate --max-tokens`` at most: a sample is held whole until it is joined and printed
(a few MB at this length; minutes of sampling on a CPU)."""


def generate(args: argparse.Namespace) -> int:
    """Sample ``--num`` continuations of ``--prompt``, each printed as soon as it is drawn."""
    checks.at_least("--num", args.num, 1)
    checks.at_most("--num", args.num, MAX_SAMPLES, "samples; for more, run again with another --seed")
    checks.at_least("--max-tokens", args.max_tokens, 1)
    if args.max_tokens is not None:
        checks.at_most("--max-tokens", args.max_tokens, MAX_GENERATED, "a sample is held whole until printed")
    checks.at_least("--top-k", args.top_k, 1)
    checks.positive_finite("--temperature", args.temperature)
    checks.probability_mass("--top-p", args.top_p)
    trained = _language_model(args)
    warn_unknown(trained.vocab, trained.codec.prompt_tokens(args.prompt))
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.num):
        options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
        options |= {"max_tokens": args.max_tokens, "generator": gen, "stop_at_eos": not args.no_stop}
        options |= {"stop": args.stop, "no_unk": args.no_unk}
        if args.json:
            print(json.dumps({"prompt": args.prompt, "text": trained.generate(args.prompt, **options)}))
        else:
            print(trained.generate(args.prompt, with_prompt=True, **options))
    return 0


def _language_model(args: argparse.Namespace) -> LanguageModelRun:
    """The run ``args.run`` as :func:`_load` gives it: a language model, or a one-line error."""
    trained = _load(args)
    if not isinstance(trained, LanguageModelRun):
        raise RnnkitError(
            f"{args.run}: a {trained.config.task!r} run; this needs a language model (task 'lm')"
        )
    return trained


ECHO_CHARS = 1000
"""A longer line is echoed by ``score`` as its first this many characters and its length."""


def score(args: argparse.Namespace) -> int:
    """Score a text line by line, ``--batch-size`` lines at a time: bounded memory however
    long the text or any of its lines (a long line is read in pieces and scored in windows,
    the state carried: the same figures; its echo is a prefix and its length, and its
    per-token figures are left out of the JSON past :data:`rnnkit.inference.LISTED_TOKENS`).
    Words not in the vocabulary are read and scored as ``<unk>``: each line says how many
    (``oov``), its tokens show ``<unk>`` where one was read, and standard error warns and
    totals them; the throughput goes there too at the end."""
    from rnnkit.cli.adapt import given_settings

    checks.at_least("--batch-size", args.batch_size, 1)
    settings = given_settings(args)
    trained = _language_model(args)
    if args.adapt is not None:
        return _score_adapted(args, trained, settings)
    name, stream, size = _open_input(args.file)
    quiet = True if args.no_progress else None
    bar = tqdm(total=size, unit="B", unit_scale=True, disable=quiet, leave=False, file=sys.stderr)
    tally = _Tally(args, trained, bar)
    chunk: list[tuple[str, int]] = []  # short lines waiting: (text, bytes)
    held = 0  # their bytes
    long: LineScore | None = None  # the long line being read, piece by piece
    echo, length = "", 0  # its first characters and its bytes so far
    with stream:
        for piece in read_pieces(stream, name, LINE_LIMIT):
            text = piece.text.rstrip("\r") if piece.last else piece.text
            if piece.first and piece.last:
                chunk.append((text, piece.size))
                held += piece.size
                if len(chunk) >= args.batch_size or held >= LINE_LIMIT:
                    tally.lines(chunk, trained.score([t for t, _ in chunk]))
                    chunk, held = [], 0
                    bar.update(piece.offset + piece.size - bar.n)
                continue
            if piece.first:  # a line longer than the reader holds: the lines before it go first
                tally.lines(chunk, trained.score([t for t, _ in chunk]))
                chunk, held = [], 0
                long, echo, length = trained.line_score(), text[:ECHO_CHARS], 0
            assert long is not None  # a piece that does not open its line follows one that did
            long.add(trained.codec.piece_tokens(text, "\n" if piece.last else None))
            length += piece.size
            if piece.last:
                tally.line(echo, length, long.result(), truncated=True)
                long = None
            bar.update(piece.offset + piece.size - bar.n)
        tally.lines(chunk, trained.score([t for t, _ in chunk]))
    bar.close()
    tally.close(name)
    return 0


def _score_adapted(args: argparse.Namespace, trained: LanguageModelRun, settings: dict[str, Any]) -> int:
    """``score --adapt``: the lines in order as one stream the model adapts to, each line's
    figures printed as soon as it ends (a long line read in pieces)."""
    scorer = trained.adapted_scorer(args.adapt, None, **settings)
    name, stream, size = _open_input(args.file)
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        disable=True if args.no_progress else None,
        leave=False,
        file=sys.stderr,
    )
    tally = _Tally(args, trained, bar)
    echo, length = "", 0
    with stream:
        for piece in read_pieces(stream, name, LINE_LIMIT):
            text = piece.text.rstrip("\r") if piece.last else piece.text
            if piece.first:
                echo, length = text[:ECHO_CHARS], 0
            scorer.add(trained.codec.piece_tokens(text, "\n" if piece.last else None))
            length += piece.size
            if piece.last:
                tally.line(echo if not piece.first else text, length, scorer.end(), truncated=not piece.first)
            bar.update(piece.offset + piece.size - bar.n)
    bar.close()
    tally.close(name)
    return 0


class _Tally:
    """What ``score`` prints per line and in all, and the notes it owes standard error."""

    def __init__(self, args: argparse.Namespace, trained: LanguageModelRun, bar: tqdm[Any]) -> None:
        self.args, self.trained, self.bar = args, trained, bar
        self.number = self.count = self.oov = 0
        self.total = 0.0
        self.warned = self.noted = False
        self.start = time.perf_counter()

    def lines(self, chunk: list[tuple[str, int]], results: list[dict[str, Any]]) -> None:
        """Print the figures of a chunk of lines read whole."""
        self.bar.clear()
        self._warn([word for result in results for word in result["unknown"]])
        for (text, size), result in zip(chunk, results):
            self.line(text, size, result)

    def _warn(self, unknown: list[str]) -> None:
        """Warn of words out of the vocabulary: once, as soon as they are known (a pipe
        reading the output may stop early)."""
        if unknown and not self.warned:
            warn_unknown(self.trained.vocab, unknown)
            self.warned = True

    def line(self, text: str, size: int, result: dict[str, Any], truncated: bool = False) -> None:
        """Print one line's figures: ``text`` is the line (its first characters when
        ``truncated``), ``size`` its bytes."""
        self.number += 1
        self.total += result["logprob"]
        self.count += result["token_count"]
        self.oov += result["oov"]
        codec = self.trained.codec
        self.bar.clear()
        self._warn(result["unknown"])
        if self.args.json:
            if codec.level == "bpe" and "tokens" in result:  # what each byte-level token reads as
                result["decoded"] = [codec.token_text(t) for t in result["tokens"]]
            if result.get("per_token_left_out") and not self.noted:
                print(
                    f"rnnkit score: note: line {self.number} has {result['token_count']} tokens: its "
                    f"tokens and surprisal_bits are left out (per_token_left_out), as for every line "
                    f"of more than {LISTED_TOKENS}",
                    file=sys.stderr,
                )
                self.noted = True
            out = json.dumps({"line": self.number, **result})
        else:
            shown = printable(text[:ECHO_CHARS])
            if truncated or len(text) > ECHO_CHARS:
                shown += f" … ({size} bytes)"
            out = (
                f"{self.number}\tlogprob {result['logprob']:.3f}\tppl {result['ppl']:.2f}\t"
                f"oov {result['oov']}\t{shown}"
            )
        sys.stdout.write(out + "\n")

    def close(self, name: str) -> None:
        """The totals: on standard output (text) and standard error."""
        vocab = self.trained.vocab
        seconds = max(time.perf_counter() - self.start, 1e-9)
        unseen = ""  # a vocabulary without <unk> (BPE) reads any text: nothing is out of it
        if vocab.unk is not None:
            share = 100 * self.oov / max(self.count, 1)
            unseen = f"; {self.oov} out of vocabulary ({share:.2f}%, scored as {vocab.unk})"
        if self.number == 0:
            print(f"rnnkit score: note: {name} is empty: no lines to score", file=sys.stderr)
        elif not self.args.json and self.count:
            print(f"all {self.count} tokens: ppl {math.exp(-self.total / self.count):.2f}{unseen}")
        print(
            f"rnnkit score: {self.number} lines, {self.count} tokens{unseen}; {seconds:.1f} s "
            f"({self.number / seconds:.0f} lines/s, {self.count / seconds:.0f} tokens/s)",
            file=sys.stderr,
        )


def _open_input(file: str) -> tuple[str, BinaryIO, int | None]:
    """``(name, binary stream, size or None)`` of a file to read once, front to back: ``-``
    is standard input; any readable file will do (a pipe, ``/dev/null``, a FIFO)."""
    if file == "-":
        return "standard input", sys.stdin.buffer, None
    path = Path(file)
    stream = open_binary(path)
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
            print(f"{p:.4f}\t{printable(token)}")  # a vocabulary holds what its corpus held
    return 0


def _sentence_format(name: str, head: list[Piece]) -> str:
    """``sst`` or ``text``: what :func:`rnnkit.data.sst.read_sentences` makes of the input's
    first lines (those read whole) when asked for ``auto`` (a malformed tree among them, in
    a file of trees, is its error naming the line)."""
    lines: dict[int, str] = {}
    for piece in head:
        lines[piece.number] = piece.text if piece.first and piece.last else ""  # a long line: not a tree
    text = "\n".join(lines.get(n, "") for n in range(1, max(lines, default=0) + 1))
    if not text.strip():
        return "text"
    trees = read_sentences(name, "auto", text=text) != read_sentences(name, "text", text=text)
    return "sst" if trees else "text"


def _classify(args: argparse.Namespace, trained: ClassifierRun, max_words: int) -> int:
    """``rnnkit predict`` of a classifier: SST trees or raw text, one sentence a line, in;
    ``class TAB name TAB probability TAB sentence`` lines (control characters escaped; or
    JSON lines with every class's probability) out, in the file's order, as it is read.

    A sentence of more than ``max_words`` words is classified on its first ``max_words``
    (a sentence is read into one vector, which its parts cannot give): a warning names the
    first such line, and its output says how many words were left out (`` … (+N words)``;
    ``words_left_out`` in JSON). An SST tree line is parsed whole: one longer than
    :data:`rnnkit.data.lines.LINE_LIMIT` is refused."""
    if args.format in ("conllu", "conll2003"):
        raise RnnkitError(f"--format {args.format} is for taggers; a classifier reads sst or text")
    name, stream, _ = _open_input(args.file)
    output = _Output(args.out)
    long = _LongLines(name, max_words, f"classified on its first {max_words} words")
    fmt = args.format
    waiting: list[tuple[list[str], int]] = []  # (words, how many more the line had)
    done = 0
    words: list[str] = []
    extra = 0

    def flush() -> None:
        nonlocal waiting, done
        if not waiting:
            return
        for (kept, left_out), result in zip(waiting, trained.classify([w for w, _ in waiting], max_words)):
            text = " ".join(kept)
            if args.json:
                output.write(
                    json.dumps({**result, "text": text} | ({"words_left_out": left_out} if left_out else {}))
                    + "\n"
                )
            else:
                shown = printable(text) + (f" … (+{left_out} words)" if left_out else "")
                output.write(
                    f"{result['class']}\t{result['name']}\t{result['probs'][result['class']]:.4f}\t{shown}\n"
                )
        done += len(waiting)
        waiting = []

    with stream:
        pieces = read_pieces(stream, name, LINE_LIMIT)
        head, _, _ = _sniff(pieces)
        if fmt == "auto":
            fmt = _sentence_format(name, head)
        for piece in itertools.chain(head, pieces):
            if piece.first:
                words, extra = [], 0
            if fmt == "sst":
                if not (piece.first and piece.last):
                    raise RnnkitError(
                        f"{name}: line {piece.number}: an SST tree of more than {LINE_LIMIT} bytes; "
                        "expected one sentence's tree a line"
                    )
                if piece.text.strip():
                    words = parse_tree(piece.text, f"{name}: line {piece.number}")[0]
            else:
                new = piece.text.split()
                room = max(max_words - len(words), 0)
                words += new[:room]
                extra += len(new) - len(new[:room])
            if piece.last and words:
                extra += max(len(words) - max_words, 0)
                if extra:
                    long.saw(piece.number, max_words + extra)
                waiting.append((words[:max_words], extra))
                if len(waiting) >= SENTENCES_AT_ONCE:
                    flush()
        flush()
    _finish(name, long, output, done)
    return 0


def export(args: argparse.Namespace) -> int:
    """``rnnkit export``: the run's checkpoint as a self-contained folder or an ONNX file."""
    if args.format == "folder":
        if args.quantize:
            raise RnnkitError("--quantize is for --format onnx (a folder holds the float32 weights)")
        if args.scoring:
            raise RnnkitError("--scoring is for --format onnx (a folder holds the whole model)")
        from rnnkit.export.folder import export_folder

        done = export_folder(args.run, args.out, which=args.which, force=args.force)
    else:
        from rnnkit.export.onnx import export_onnx

        trained = load(args.run, which=args.which)
        done = export_onnx(trained, args.out, args.force, args.quantize, scoring=args.scoring)
    for line in done.lines():
        print(line)
    return 0
