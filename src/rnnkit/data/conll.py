"""Tagging corpora in and out: CoNLL-U, CoNLL-2003, raw text, and the chunk tag schemes.

Readers keep what a writer needs to give the file back exactly, so a model's predictions
can be scored by the official tools: the CoNLL 2018 UD scorer for CoNLL-U (the tag column
of each word replaced) and ``conlleval`` for CoNLL-2003 (one predicted-tag column added).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_text, write_text_atomic

CONLLU_TAG_COLUMNS = {"upos": 3, "xpos": 4}
DOCSTART = "-DOCSTART-"

_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.([1-9][0-9]*)")
_BLANKS = re.compile(r"[ \t]+")


@dataclass
class Sentence:
    """One sentence of a tagging corpus, with what it takes to write it back exactly.

    Attributes:
        words: the scored words. In CoNLL-U these are the syntactic words (integer IDs);
            multiword-token ranges (``3-4``) and empty nodes (``5.1``) are kept in
            ``lines`` but not scored.
        tags: the gold tag of each word, or ``None`` (raw text).
        source: the file the sentence was read from.
        line: the 1-based line number of the sentence's first line in ``source``.
        lines: CoNLL-U: every line of the sentence as read (comments, ranges, empty nodes
            and words), without the newline.
        word_lines: CoNLL-U: the index in ``lines`` of each scored word.
        tag_column: CoNLL-U: the 0-based column holding the tag (3 UPOS, 4 XPOS).
        columns: CoNLL-2003: each token's columns as read.
        docstart: CoNLL-2003: the columns of the ``-DOCSTART-`` line before this sentence,
            when the sentence opens a document.
    """

    words: list[str]
    tags: list[str] | None = None
    source: str = ""
    line: int = 0
    lines: list[str] | None = None
    word_lines: list[int] | None = None
    tag_column: int | None = None
    columns: list[list[str]] | None = None
    docstart: list[str] | None = None


def read_conllu(path: str | os.PathLike, column: str = "upos", text: str | None = None) -> list[Sentence]:
    """The sentences of a CoNLL-U file, tagged with its ``upos`` or ``xpos`` column.

    Each sentence is optional ``#`` comment lines, then word lines of 10 tab-separated
    columns, then a blank line (a missing blank line at the end of the file is fine).
    Word IDs run 1, 2, 3, ...; a range ``n-m`` (multiword token) comes just before word
    ``n`` and an empty node ``n.k`` just after word ``n``.

    ``text``: the file's text when it is already read (standard input); ``path`` then only
    names it in messages.

    Raises:
        RnnkitError: the file is missing, empty or not UTF-8, or a line is malformed (the
            message names the file, the line and what was expected).
    """
    if column not in CONLLU_TAG_COLUMNS:
        raise RnnkitError(f"column={column!r}: expected one of {', '.join(map(repr, CONLLU_TAG_COLUMNS))}")
    text = _text(path, "CoNLL-U file", text)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    sentences: list[Sentence] = []
    start = 0
    for end in range(len(lines) + 1):
        if end == len(lines) or not lines[end].strip():
            if end > start:
                sentences.append(_conllu_sentence(lines[start:end], str(path), start + 1, column))
            start = end + 1
    return sentences


def _conllu_sentence(lines: list[str], source: str, first: int, column: str) -> Sentence:
    tag_column = CONLLU_TAG_COLUMNS[column]
    words: list[str] = []
    tags: list[str] = []
    word_lines: list[int] = []
    last = 0  # the last word ID so far
    range_end = 0  # the last word a multiword token spans
    for index, line in enumerate(lines):
        where = f"{source}: line {first + index}"
        if line.startswith("#"):
            if words:
                raise RnnkitError(f"{where}: a comment after word lines; expected a blank line before it")
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 10:
            raise RnnkitError(f"{where}: expected 10 tab-separated columns, got {len(fields)}")
        if "" in fields:
            raise RnnkitError(f"{where}: column {fields.index('') + 1} is empty; expected a value or '_'")
        ident = fields[0]
        if _WORD_ID.fullmatch(ident):
            if int(ident) != last + 1:
                raise RnnkitError(f"{where}: word ID {ident}; expected {last + 1} (IDs run 1, 2, 3, ...)")
            last += 1
            words.append(fields[1])
            tags.append(fields[tag_column])
            word_lines.append(index)
        elif match := _RANGE_ID.fullmatch(ident):
            low, high = int(match[1]), int(match[2])
            if low != last + 1 or high <= low:
                raise RnnkitError(f"{where}: range ID {ident}; expected {last + 1}-m with m > {last + 1}")
            range_end = high
        elif match := _EMPTY_ID.fullmatch(ident):
            if int(match[1]) != last:
                raise RnnkitError(f"{where}: empty node ID {ident}; expected {last}.k (after word {last})")
        else:
            raise RnnkitError(
                f"{where}: bad ID {ident!r}; expected a word ID (1, 2, ...), a range (3-4) "
                "or an empty node (5.1)"
            )
    if not words:
        raise RnnkitError(f"{source}: line {first}: a sentence with no word lines; expected word lines")
    if range_end > last:
        raise RnnkitError(
            f"{source}: line {first}: a range reaches word {range_end}; the sentence has {last}"
        )
    return Sentence(words, tags, source, first, lines, word_lines, tag_column)


def write_conllu(
    sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]], path: str | os.PathLike
) -> None:
    """Write ``sentences`` back as CoNLL-U with each word's tag replaced by its prediction.

    Every line is kept exactly as read except the tag column (the one the sentence was
    read with, UPOS or XPOS) of the scored words, so the CoNLL 2018 UD scorer can compare
    the file with the gold one. Each sentence ends with one blank line: a file in that
    standard form comes back byte for byte when the predictions are the gold tags.
    Written atomically.
    """
    _check_predictions(sentences, predictions)
    out: list[str] = []
    for sentence, predicted in zip(sentences, predictions):
        if sentence.lines is None or sentence.word_lines is None or sentence.tag_column is None:
            raise RnnkitError(f"{_where(sentence)}: not read from a CoNLL-U file; no lines to write back")
        lines = list(sentence.lines)
        for index, tag in zip(sentence.word_lines, predicted):
            fields = lines[index].split("\t")
            fields[sentence.tag_column] = tag
            lines[index] = "\t".join(fields)
        out.extend(line + "\n" for line in lines)
        out.append("\n")
    write_text_atomic(path, "".join(out))


def read_conll2003(path: str | os.PathLike, text: str | None = None) -> list[Sentence]:
    """The sentences of a CoNLL-2003 file: ``token POS chunk NER`` lines, tagged with the last column.

    Columns are separated by spaces; every token line of the file has as many as most of
    them have (at least two: a token and its tag). Blank lines end sentences. A
    ``-DOCSTART-`` line opens a document and is not a sentence; its columns are kept in
    the next sentence's ``docstart``. The tags are returned as in the file (IOB1 in the
    original English data; see :func:`iob1_to_bio`). ``text``: as in :func:`read_conllu`.

    Raises:
        RnnkitError: the file is missing, empty, not UTF-8, has no sentences, or a line
            has the wrong number of columns (naming the file and line).
    """
    source = str(path)
    text = _text(path, "CoNLL-2003 file", text)
    lines = [*text.split("\n"), ""]  # "": the last sentence ends
    rows = [(n, f) for n, f in enumerate(map(_conll_fields, lines), 1) if f and f[0] != DOCSTART]
    width, width_line = _usual_width(rows)
    sentences: list[Sentence] = []
    block: list[list[str]] = []
    first = 0
    docstart: list[str] | None = None
    for number, line in enumerate(lines, 1):
        fields = _conll_fields(line)
        if block and (not fields or fields[0] == DOCSTART):
            words, tags = [f[0] for f in block], [f[-1] for f in block]
            sentences.append(Sentence(words, tags, source, first, columns=block, docstart=docstart))
            block, docstart = [], None
        if not fields:
            continue
        if fields[0] == DOCSTART:
            docstart = fields
            continue
        if len(fields) != width:
            raise RnnkitError(f"{source}: line {number}: {_width_expected(width, width_line, len(fields))}")
        if not block:
            first = number
        block.append(fields)
    if not sentences:
        raise RnnkitError(f"{source}: no sentences; expected token lines (token ... tag)")
    return sentences


def _conll_fields(line: str) -> list[str]:
    """A CoNLL-2003 line's space-separated columns (none for a blank line)."""
    stripped = line.strip(" \t\r")
    return _BLANKS.split(stripped) if stripped else []


def _usual_width(rows: Sequence[tuple[int, list[str]]]) -> tuple[int, int]:
    """``(width, line)``: the number of columns (2 or more) most of ``rows`` have (a tie: the
    first seen), and the first line with it; ``(0, 0)`` when no row has 2 columns."""
    counts: dict[int, list[int]] = {}
    for number, fields in rows:
        if len(fields) >= 2:
            counts.setdefault(len(fields), []).append(number)
    if not counts:
        return 0, 0
    width = max(counts, key=lambda w: (len(counts[w]), -counts[w][0]))
    return width, counts[width][0]


def _width_expected(width: int, width_line: int, got: int) -> str:
    """What a CoNLL-2003 token line with ``got`` columns should have had."""
    if not width:
        return "expected a token and its tag, got one column"
    return f"expected {width} space-separated columns (as on line {width_line}), got {got}"


def write_conll2003(
    sentences: Sequence[Sentence],
    predictions: Sequence[Sequence[str]],
    path: str | os.PathLike,
    docstart: bool = False,
) -> None:
    """Write each token's columns plus its predicted tag, a blank line after each sentence.

    The gold tag is then the second-to-last column and the prediction the last, which is
    what ``conlleval`` reads. A sentence without ``columns`` (read from CoNLL-U or raw
    text) writes its word and, if known, its gold tag.

    Args:
        docstart: ``False`` (default) leaves the ``-DOCSTART-`` lines out: they are not
            sentences, and ``conlleval`` would count each one as a token. ``True`` writes
            each one back (its columns plus the tag ``O``) with a blank line after it, so
            the output lines up with the input file line for line.
    """
    _check_predictions(sentences, predictions)
    out: list[str] = []
    for sentence, predicted in zip(sentences, predictions):
        if docstart and sentence.docstart is not None:
            out.append(" ".join([*sentence.docstart, "O"]) + "\n\n")
        columns = sentence.columns
        if columns is None:
            gold = sentence.tags if sentence.tags is not None else [None] * len(sentence.words)
            columns = [[word] if tag is None else [word, tag] for word, tag in zip(sentence.words, gold)]
        out.extend(" ".join([*fields, tag]) + "\n" for fields, tag in zip(columns, predicted))
        out.append("\n")
    write_text_atomic(path, "".join(out))


def read_raw(path: str | os.PathLike, text: str | None = None) -> list[Sentence]:
    """Untagged text, one sentence a line, split on whitespace; blank lines are skipped.
    ``text``: as in :func:`read_conllu`."""
    text = _text(path, "text file", text)
    return [
        Sentence(line.split(), None, str(path), number)
        for number, line in enumerate(text.split("\n"), 1)
        if line.strip()
    ]


def _text(path: str | os.PathLike, what: str, text: str | None) -> str:
    """``text`` if given (refused when blank, as :func:`read_text` refuses), else the file's."""
    if text is None:
        return read_text(path, what)
    if not text.strip():
        raise RnnkitError(f"{path}: the {what} is empty")
    return text


SNIFF_BYTES = 1 << 16
"""How much of a file :func:`sniff_format` reads: its first 64 KiB."""

SNIFF_LINES = 200
"""How many of those first lines (not blank) :func:`sniff_format` weighs."""

_ENTITY_TAG = re.compile(r"O|[BIES]-\S+")
_NAMED = (
    ("conllu", re.compile(r".*\.conllu")),
    ("conll2003", re.compile(r".*\.(conll|iob|iob1|iob2|bio|bioes)|eng\.(train|testa|testb)")),
    ("text", re.compile(r".*\.txt")),
)
FORMAT_NAMES = {"conllu": "CoNLL-U", "conll2003": "CoNLL-2003", "text": "plain text"}


def sniff_format(path: str | os.PathLike, text: str | None = None) -> str:
    """The format of a file to tag, from its first lines (:data:`SNIFF_BYTES` at most):
    ``conllu``, ``conll2003`` or ``text`` (see :func:`sniff_reason`). ``text``: the file's
    text when it is already read; ``path`` is then not opened."""
    return sniff_reason(path, text)[0]


def sniff_reason(path: str | os.PathLike, text: str | None = None) -> tuple[str, str]:
    """:func:`sniff_format` and why, in words.

    Weighed on the first :data:`SNIFF_LINES` lines that are not blank, by what most of them
    are, so that one malformed line does not turn a corpus into raw text (the reader then
    names that line): ``conllu`` when most lines that are not ``#`` comments are word lines
    of tab-separated columns opening with a CoNLL-U ID (``1``, ``3-4``, ``5.1``), one of them
    at least with all 10 columns. ``conll2003`` when the file opens with ``-DOCSTART-``, or
    when most lines have one same number (2 or more) of space-separated columns ending in an
    entity tag (``O``, ``B-PER``, ``I-ORG`` ...), two lines at least: a raw sentence that
    happens to end in ``O`` is outvoted by the others. Otherwise ``text``.

    Raises:
        RnnkitError: the file looks like CoNLL-2003 but one of those lines has another number
            of columns (naming the file, the line, what was expected, and ``--format text``).
    """
    if text is None:
        try:
            with open(path, "rb") as f:
                data = f.read(SNIFF_BYTES)
        except OSError:
            return "text", "it cannot be read"  # the reader will say why, naming the file
        prefix = data.decode("utf-8", errors="replace")
        if len(data) == SNIFF_BYTES:  # the last line may be cut: leave it out
            prefix = prefix[: prefix.rfind("\n") + 1] or prefix
    else:
        prefix = text[:SNIFF_BYTES]
    lines = [line.rstrip("\r") for line in prefix.split("\n")]
    first = next((line for line in lines if line.strip()), "")
    if first.split()[:1] == [DOCSTART]:
        return "conll2003", f"it opens with {DOCSTART}"
    content = [(n, line) for n, line in enumerate(lines, 1) if line.strip()][:SNIFF_LINES]
    conllu = _conllu_reason(content, first.startswith("#"))
    if conllu is not None:
        return "conllu", conllu
    conll2003 = _conll2003_reason(content, path)
    if conll2003 is not None:
        return "conll2003", conll2003
    return "text", "its first lines are neither CoNLL-U nor CoNLL-2003"


def _conllu_reason(content: list[tuple[int, str]], comments: bool) -> str | None:
    """Why ``content`` (numbered lines, none blank) is CoNLL-U, or None when it is not."""
    rows = [line.split("\t") for _, line in content if not line.startswith("#")]
    words = [f for f in rows if len(f) >= 2 and _is_conllu_id(f[0])]
    if not rows or 2 * len(words) <= len(rows) or not any(len(f) == 10 for f in words):
        return None
    opens = "'#' comment lines and " if comments else ""
    if len(words) == len(rows):
        return f"it opens with {opens}word lines of 10 tab-separated columns and an ID"
    return f"it opens with {opens}word lines of tab-separated columns and an ID ({len(words)} of {len(rows)})"


def _is_conllu_id(field: str) -> bool:
    return bool(_WORD_ID.fullmatch(field) or _RANGE_ID.fullmatch(field) or _EMPTY_ID.fullmatch(field))


def _conll2003_reason(content: list[tuple[int, str]], path: str | os.PathLike) -> str | None:
    """Why ``content`` (numbered lines, none blank) is CoNLL-2003, or None when it is not;
    refused when it is but a line has another number of columns."""
    rows = [(n, f) for n, f in ((n, _conll_fields(line)) for n, line in content) if f[0] != DOCSTART]
    tagged = [(n, f) for n, f in rows if len(f) >= 2 and _ENTITY_TAG.fullmatch(f[-1])]
    width, _ = _usual_width(tagged)
    agree = sum(len(f) == width for _, f in tagged)
    if agree < 2 or 2 * agree <= len(rows):
        return None
    width_line = next(n for n, f in rows if len(f) == width)  # as the reader names it
    share = "its lines have" if agree == len(rows) else f"{agree} of its first {len(rows)} lines have"
    why = f"{share} {width} columns ending in an entity tag"
    bad = next(((n, f) for n, f in rows if len(f) != width), None)
    if bad is not None:
        number, fields = bad
        raise RnnkitError(
            f"{path}: line {number}: {_width_expected(width, width_line, len(fields))}; read as "
            f"CoNLL-2003 because {why} (--format text reads the file as plain text)"
        )
    return why


def detect_format(path: str | os.PathLike, text: str | None = None) -> tuple[str, str | None]:
    """The format of a file to tag, by its content (:func:`sniff_reason`), and a warning
    when its name says otherwise (``*.conllu``; ``*.conll``, ``*.iob``, ``eng.testb`` ...;
    ``*.txt``), or ``None``."""
    fmt, why = sniff_reason(path, text)
    name = os.path.basename(str(path)).lower()
    named = next((f for f, pattern in _NAMED if pattern.fullmatch(name)), None)
    if named is None or named == fmt:
        return fmt, None
    return fmt, (
        f"{path}: read as {FORMAT_NAMES[fmt]} although its name suggests {FORMAT_NAMES[named]}, "
        f"because {why} (--format decides otherwise)"
    )


def _where(sentence: Sentence) -> str:
    return f"{sentence.source or 'sentence'}: line {sentence.line}"


def _check_predictions(sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(sentences):
        raise RnnkitError(f"predictions for {len(predictions)} sentences; expected {len(sentences)}")
    for sentence, predicted in zip(sentences, predictions):
        if len(predicted) != len(sentence.words):
            raise RnnkitError(
                f"{_where(sentence)}: {len(predicted)} predicted tags; expected one per word "
                f"({len(sentence.words)})"
            )
        for tag in predicted:
            if not isinstance(tag, str) or not tag or any(c.isspace() for c in tag):
                raise RnnkitError(
                    f"{_where(sentence)}: predicted tag {tag!r}; expected a non-empty tag, no spaces"
                )


# Chunk tag schemes. A tag is ``O`` or ``PREFIX-TYPE``. IOB1 starts a chunk with ``I-``
# and uses ``B-`` only for a chunk directly after a chunk of the same type; BIO starts
# every chunk with ``B-``; BIOES also ends chunks with ``E-`` and writes one-word chunks
# ``S-``. An ``I-X`` after ``O`` or after another type starts a chunk, as ``conlleval``
# reads it, so each conversion keeps the chunks of any input in its scheme.


def split_chunk_tag(tag: object, prefixes: str) -> tuple[str, str] | None:
    """``tag`` as ``(prefix, type)``: ``"O"`` is ``("O", "")``, ``"B-PER"`` is ``("B", "PER")``.

    None when ``tag`` is neither ``O`` nor ``P-TYPE`` with a one-letter ``P`` in ``prefixes``
    and a non-empty ``TYPE``: each caller says why in its own words. The one chunk-tag parser:
    the scheme conversions here and :mod:`rnnkit.tasks.tagging_metrics` use it.
    """
    if tag == "O":
        return "O", ""
    if not isinstance(tag, str):
        return None
    prefix, dash, kind = tag.partition("-")
    if dash and kind and len(prefix) == 1 and prefix in prefixes:
        return prefix, kind
    return None


def _parse(tags: Sequence[str], prefixes: str, scheme: str) -> list[tuple[str, str]]:
    """Every tag of one sentence split by :func:`split_chunk_tag`; an illegal one raises."""
    parsed: list[tuple[str, str]] = []
    for index, tag in enumerate(tags):
        split = split_chunk_tag(tag, prefixes)
        if split is None:
            allowed = ", ".join(f"{p}-TYPE" for p in prefixes)
            raise RnnkitError(f"tag {index} {tag!r}: expected O, {allowed} ({scheme})")
        parsed.append(split)
    return parsed


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 tags to BIO: an ``I-X`` that starts a chunk becomes ``B-X``."""
    out, previous = [], None
    for (prefix, kind), tag in zip(_parse(tags, "BI", "IOB1"), tags):
        out.append("B-" + kind if prefix == "I" and kind != previous else tag)
        previous = kind
    return out


def bio_to_iob1(tags: Sequence[str]) -> list[str]:
    """BIO tags to IOB1: a ``B-X`` stays only right after an ``X`` chunk, else it becomes ``I-X``.

    The inverse of :func:`iob1_to_bio` on valid IOB1.
    """
    out, previous = [], None
    for (prefix, kind), tag in zip(_parse(tags, "BI", "BIO"), tags):
        out.append("I-" + kind if prefix == "B" and kind != previous else tag)
        previous = kind
    return out


def bio_to_bioes(tags: Sequence[str]) -> list[str]:
    """BIO tags to BIOES: a chunk's last word gets ``E-`` and a one-word chunk ``S-``."""
    parsed = _parse(tags, "BI", "BIO")
    out = []
    for i, (prefix, kind) in enumerate(parsed):
        if prefix == "O":
            out.append("O")
            continue
        starts = prefix == "B" or i == 0 or parsed[i - 1][1] != kind
        ends = i + 1 == len(parsed) or parsed[i + 1] != ("I", kind)
        if starts:
            out.append(("S-" if ends else "B-") + kind)
        else:
            out.append(("E-" if ends else "I-") + kind)
    return out


def bioes_to_bio(tags: Sequence[str]) -> list[str]:
    """BIOES tags to BIO: ``S-`` becomes ``B-`` and ``E-`` becomes ``I-``.

    The inverse of :func:`bio_to_bioes` on valid BIO.
    """
    rename = {"O": "O", "B": "B", "S": "B", "I": "I", "E": "I"}
    return [
        "O" if prefix == "O" else f"{rename[prefix]}-{kind}" for prefix, kind in _parse(tags, "BIES", "BIOES")
    ]
