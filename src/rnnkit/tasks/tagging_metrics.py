"""Sequence-tagging metrics: token accuracy, conlleval span F1, confusion matrix, per-label scores.

All functions take a corpus as ``gold`` and ``pred``: lists of sentences, each a list of
tag strings, sentence ``i`` of ``pred`` tagging the same tokens as sentence ``i`` of
``gold``. Mismatched shapes are a :class:`~rnnkit.errors.RnnkitError`; a predicted tag
that never occurs in ``gold`` is fine (it is simply wrong).

Span scores reproduce the CoNLL shared-task script ``conlleval.pl``: chunks are found
by its start-of-chunk / end-of-chunk rules (see :func:`chunks`), a predicted chunk is
correct when its type, start and end all equal a gold chunk's, and the counts are
summed over the whole corpus before dividing (micro average). Scores are returned as
fractions in ``[0, 1]``; :func:`format_report` prints them as conlleval does, in percent.

Example::

    >>> gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    >>> pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    >>> s = span_scores(gold, pred)
    >>> s["precision"], s["recall"], s["per_type"]["PER"]["f1"]
    (0.5, 0.5, 1.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnkit.data.conll import split_chunk_tag
from rnnkit.errors import RnnkitError

Corpus = Sequence[Sequence[str]]
Chunk = tuple[str, int, int]

SCHEMES: dict[str, frozenset[str]] = {
    "iob1": frozenset("BI"),
    "bio": frozenset("BI"),
    "bioes": frozenset("BIES"),
    "auto": frozenset("BIES"),
}
"""The chunk prefixes each scheme allows (besides the tag ``O``)."""


def _check_corpus(gold: Corpus, pred: Corpus) -> None:
    """Raise unless ``gold`` and ``pred`` are lists of sentences of equal lengths."""
    for name, corpus in (("gold", gold), ("pred", pred)):
        if isinstance(corpus, str):
            raise RnnkitError(
                f"{name} must be a list of sentences (lists of tags), got the string {corpus!r}"
            )
    if len(gold) != len(pred):
        raise RnnkitError(f"gold has {len(gold)} sentences but pred has {len(pred)}; they must match")
    for i, (g, p) in enumerate(zip(gold, pred)):
        for name, sentence in (("gold", g), ("pred", p)):
            if isinstance(sentence, str):
                raise RnnkitError(
                    f"sentence {i} of {name} is the string {sentence!r}; expected a list of tags "
                    "(pass a list of sentences, not one sentence)"
                )
        if len(g) != len(p):
            raise RnnkitError(f"sentence {i}: gold has {len(g)} tags but pred has {len(p)}; they must match")


def token_accuracy(gold: Corpus, pred: Corpus) -> float:
    """Fraction of tokens whose predicted tag equals the gold tag (0.0 for an empty corpus).

    This is conlleval's ``accuracy`` (divided by 100): whole tags are compared, so
    ``B-PER`` against ``I-PER`` is wrong.
    """
    _check_corpus(gold, pred)
    tokens = sum(len(g) for g in gold)
    right = sum(g_t == p_t for g, p in zip(gold, pred) for g_t, p_t in zip(g, p))
    return right / tokens if tokens else 0.0


def _parse(tag: str, allowed: frozenset[str], scheme: str, where: str) -> tuple[str, str]:
    """``tag`` as (prefix, type) by :func:`~rnnkit.data.conll.split_chunk_tag`; an illegal one raises."""
    split = split_chunk_tag(tag, "".join(sorted(allowed)))
    if split is None:
        legal = ", ".join(f"{p}-TYPE" for p in sorted(allowed))
        raise RnnkitError(f"{where}: tag {tag!r} is not a {scheme} chunk tag; expected O or {legal}")
    return split


def _chunks(tags: Sequence[str], scheme: str, where: str) -> list[Chunk]:
    if scheme not in SCHEMES:
        raise RnnkitError(f"scheme={scheme!r} is unknown; expected one of {', '.join(SCHEMES)}")
    allowed = SCHEMES[scheme]
    found: list[Chunk] = []
    prev_prefix, prev_kind, start = "O", "", 0
    for i, tag in enumerate(tags):
        prefix, kind = _parse(tag, allowed, scheme, f"{where}token {i}")
        # The only way a chunk goes on: B-X or I-X followed by I-X or E-X of the same type.
        # Anything else closes the open chunk (if any) and opens one at a non-O tag.
        goes_on = prev_prefix in ("B", "I") and prefix in ("I", "E") and kind == prev_kind
        if not goes_on:
            if prev_prefix != "O":
                found.append((prev_kind, start, i))
            start = i
        prev_prefix, prev_kind = prefix, kind
    if prev_prefix != "O":
        found.append((prev_kind, start, len(tags)))
    return found


def chunks(tags: Sequence[str], scheme: str = "auto") -> list[Chunk]:
    """The chunks of one sentence as ``(type, start, end)`` with ``end`` exclusive, in order.

    Tags are ``O`` or ``P-TYPE`` with prefix ``P`` in ``B I`` (``scheme`` ``"iob1"`` or
    ``"bio"``) or ``B I E S`` (``"bioes"``, ``"auto"``); anything else is an error. The
    scheme only says which prefixes are legal: the rules below, conlleval.pl's, read
    every scheme, and ill-formed sequences (``I-X`` after ``O``) get a reading too.

    Between the previous tag and the current one:

    * a chunk **starts** at ``B-X`` and ``S-X``; at ``I-X`` or ``E-X`` after ``O``,
      ``E-``, ``S-`` or the sentence start (so IOB1's ``O I-LOC`` is a LOC chunk); and at
      any chunk tag whose type differs from the previous tag's (``I-ORG I-LOC`` is ORG
      then LOC);
    * a chunk **ends** before ``O``, ``B-`` or ``S-``; after ``E-`` or ``S-``; at a type
      change; and at the end of the sentence.

    So a chunk continues only from ``B-X``/``I-X`` into ``I-X``/``E-X`` of the same type:
    ``I-PER I-PER B-PER`` is two PER chunks, ``(PER, 0, 2)`` and ``(PER, 2, 3)``.

    .. note::
       On ``B``/``I``/``O`` tags (IOB1, BIO) these are exactly conlleval.pl's rules.
       conlleval.pl knows ``E-`` only partly and ``S-`` not at all: it reads
       ``B-X E-X B-X E-X`` and ``S-X S-X`` as one chunk each. Here a chunk always ends
       after ``E-``/``S-`` and ``B-``/``S-`` always start one, as BIOES means (and as
       seqeval's default mode does).

    Raises:
        RnnkitError: for an unknown ``scheme`` or a tag it does not allow.
    """
    return _chunks(tags, scheme, "")


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _prf(correct: int, predicted: int, support: int) -> dict[str, float]:
    precision, recall = _ratio(correct, predicted), _ratio(correct, support)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def span_scores(gold: Corpus, pred: Corpus, scheme: str = "auto") -> dict[str, Any]:
    """Chunk precision, recall and F1 over a corpus, as conlleval.pl counts them.

    Chunks come from :func:`chunks`, sentence by sentence (a chunk never spans two
    sentences). A predicted chunk is correct when a gold chunk has its type, start and
    end. Counts are summed over the corpus, then divided (micro average); a ratio with
    a zero denominator is 0.0, as in conlleval.

    Returns:
        A dict of fractions in ``[0, 1]`` (conlleval prints 100 times these):
        ``precision``, ``recall``, ``f1`` (overall), ``accuracy`` (token level);
        the counts ``tokens``, ``gold_chunks``, ``pred_chunks``, ``correct_chunks``;
        and ``per_type``: ``{type: {precision, recall, f1, support, predicted, correct}}``
        for every type in gold or pred, sorted by name (``support`` counts gold chunks,
        ``predicted`` guessed ones).

    Raises:
        RnnkitError: for mismatched shapes or tags ``scheme`` does not allow.
    """
    _check_corpus(gold, pred)
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_right: Counter[str] = Counter()
    for i, (g, p) in enumerate(zip(gold, pred)):
        g_chunks = _chunks(g, scheme, f"gold sentence {i}, ")
        p_chunks = _chunks(p, scheme, f"pred sentence {i}, ")
        n_gold.update(kind for kind, _, _ in g_chunks)
        n_pred.update(kind for kind, _, _ in p_chunks)
        n_right.update(kind for kind, _, _ in set(g_chunks) & set(p_chunks))
    correct, found_pred, found_gold = n_right.total(), n_pred.total(), n_gold.total()
    per_type = {
        kind: {
            **_prf(n_right[kind], n_pred[kind], n_gold[kind]),
            "support": n_gold[kind],
            "predicted": n_pred[kind],
            "correct": n_right[kind],
        }
        for kind in sorted(n_gold.keys() | n_pred.keys())
    }
    return {
        **_prf(correct, found_pred, found_gold),
        "accuracy": token_accuracy(gold, pred),
        "tokens": sum(len(g) for g in gold),
        "gold_chunks": found_gold,
        "pred_chunks": found_pred,
        "correct_chunks": correct,
        "per_type": per_type,
    }


def confusion_matrix(
    gold: Corpus, pred: Corpus, labels: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Token-level confusion counts: ``matrix[i, j]`` tokens with gold ``labels[i]``, predicted ``labels[j]``.

    Args:
        gold, pred: the corpus (lists of sentences of tags).
        labels: the row/column order. ``None`` uses every tag in gold or pred, sorted;
            given labels must be distinct and cover every tag that occurs.

    Returns:
        ``(labels, matrix)`` with ``matrix`` of dtype ``int64`` and shape ``(K, K)``;
        rows are gold, columns predicted, and the matrix sums to the token count.
    """
    _check_corpus(gold, pred)
    if labels is None:
        labels = sorted({t for s in gold for t in s} | {t for s in pred for t in s})
    else:
        labels = list(labels)
        repeated = sorted({t for t in labels if labels.count(t) > 1})
        if repeated:
            raise RnnkitError(f"labels must be distinct; {repeated} appear more than once")
    index = {label: k for k, label in enumerate(labels)}
    cells: list[int] = []
    for i, (g, p) in enumerate(zip(gold, pred)):
        for name, sentence in (("gold", g), ("pred", p)):
            for t in sentence:
                if t not in index:
                    raise RnnkitError(
                        f"{name} sentence {i} has tag {t!r}, which is not in labels; "
                        "add it to labels or pass labels=None"
                    )
        cells.extend(index[g_t] * len(labels) + index[p_t] for g_t, p_t in zip(g, p))
    counts = np.bincount(np.asarray(cells, dtype=np.int64), minlength=len(labels) ** 2)
    return labels, counts.astype(np.int64).reshape(len(labels), len(labels))


def label_scores(gold: Corpus, pred: Corpus) -> dict[str, dict[str, float]]:
    """Token-level precision, recall (the label's accuracy), F1 and support per tag, for POS tagging.

    For each tag in gold or pred (sorted): ``precision`` is the fraction of tokens
    predicted as it that are right, ``recall`` the fraction of its gold tokens tagged
    right (per-label accuracy), ``support`` its gold token count. 0/0 is 0.0.
    """
    per_label: dict[str, dict[str, float]] = label_report(gold, pred)["per_label"]
    return per_label


def label_report(gold: Corpus, pred: Corpus, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-label scores (:func:`label_scores`), their averages and the confusion matrix, as
    plain JSON data: ``{"labels": [...], "per_label": {label: {...}}, "accuracy": ...,
    "tokens": ..., "macro": {...}, "weighted": {...}, "confusion": [[...]]}`` (rows gold).

    ``macro`` is the unweighted mean of each label's precision, recall and F1; ``weighted``
    the mean weighted by each label's support; both over every label of the report, as
    scikit-learn's ``classification_report`` averages (a label with no gold tokens counts
    0 in ``macro``). ``accuracy`` is the token accuracy (the micro average).
    ``labels`` fixes the order (e.g. a classifier's classes); ``None`` sorts the tags seen."""
    labels, matrix = confusion_matrix(gold, pred, labels)
    right, predicted, support = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    per_label = {
        label: {**_prf(int(right[k]), int(predicted[k]), int(support[k])), "support": int(support[k])}
        for k, label in enumerate(labels)
    }
    tokens = int(matrix.sum())
    keys = ("precision", "recall", "f1")
    macro = {key: _ratio(sum(s[key] for s in per_label.values()), len(labels)) for key in keys}
    weighted = {key: _ratio(sum(s[key] * s["support"] for s in per_label.values()), tokens) for key in keys}
    return {
        "labels": labels,
        "per_label": per_label,
        "accuracy": _ratio(int(right.sum()), tokens),
        "tokens": tokens,
        "macro": macro,
        "weighted": weighted,
        "confusion": matrix.tolist(),
    }


MAX_WIDTH = 120
"""The widest text confusion matrix drawn with label names as column heads; wider ones
number the columns and put the number before each row's label."""


def format_label_report(report: dict[str, Any]) -> str:
    """:func:`label_report` as text: a precision/recall/F1/support line per label (all in
    percent), the accuracy and the macro and weighted averages, then the confusion matrix
    (rows gold, columns predicted; zeros shown as ``.``). Labels are never shortened: the
    columns are as wide as the longest label, or, when that would make a line wider than
    :data:`MAX_WIDTH`, headed by numbers that prefix the rows' labels."""
    labels = report["labels"]
    width = max([12, *(len(label) for label in labels)])  # 12: "weighted avg"

    def line(name: str, s: dict[str, Any]) -> str:
        return (
            f"{name:>{width}}  {100 * s['precision']:8.2f}%  {100 * s['recall']:6.2f}%  "
            f"{100 * s['f1']:6.2f}%  {s['support']:7d}"
        )

    lines = [f"{'label':>{width}}  precision   recall        F1  support"]
    lines += [line(label, report["per_label"][label]) for label in labels]
    if "macro" in report:  # reports saved before the averages existed have none
        tokens = report["tokens"]
        lines += [
            "",
            f"{'accuracy':>{width}}  {'':9}  {'':7}  {100 * report['accuracy']:6.2f}%  {tokens:7d}",
            line("macro avg", {**report["macro"], "support": tokens}),
            line("weighted avg", {**report["weighted"], "support": tokens}),
        ]
    counts = report["confusion"]
    digits = max((len(str(c)) for row in counts for c in row), default=1)
    cell = max([digits, *(len(label) for label in labels)]) + 1
    numbered = width + cell * len(labels) > MAX_WIDTH
    if numbered:
        cell = max(digits, len(str(len(labels) - 1))) + 1
        heads = [str(k) for k in range(len(labels))]
        names = [f"{k:>{len(str(len(labels) - 1))}} {label}" for k, label in enumerate(labels)]
        width = max(len(name) for name in names)
    else:
        heads, names = labels, labels
    lines += [
        "",
        "confusion (rows gold, columns predicted"
        + ("; column k is the label numbered k):" if numbered else "):"),
        " " * width + "".join(f"{head:>{cell}}" for head in heads),
    ]
    for name, row in zip(names, counts):
        lines.append(
            f"{name:{'<' if numbered else '>'}{width}}" + "".join(f"{c if c else '.':>{cell}}" for c in row)
        )
    return "\n".join(lines) + "\n"


def format_report(scores: dict[str, Any]) -> str:
    """conlleval.pl's text report for the output of :func:`span_scores`, in percent.

    The overall block (tokens, chunk counts, accuracy, precision, recall, FB1), then one
    line per type. As in conlleval, the number ending a type's line is the count of
    *predicted* chunks of that type, and the accuracy line is left out for no tokens.
    For the module example (gold ``B-PER I-PER O B-LOC``, pred ``B-PER I-PER O B-ORG``)::

        processed 4 tokens with 2 phrases; found: 2 phrases; correct: 1.
        accuracy:  75.00%; precision:  50.00%; recall:  50.00%; FB1:  50.00
                      LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0
                      ORG: precision:   0.00%; recall:   0.00%; FB1:   0.00  1
                      PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1
    """
    lines = [
        f"processed {scores['tokens']} tokens with {scores['gold_chunks']} phrases; "
        f"found: {scores['pred_chunks']} phrases; correct: {scores['correct_chunks']}."
    ]
    if scores["tokens"]:
        lines.append(
            f"accuracy: {100 * scores['accuracy']:6.2f}%; precision: {100 * scores['precision']:6.2f}%; "
            f"recall: {100 * scores['recall']:6.2f}%; FB1: {100 * scores['f1']:6.2f}"
        )
    for kind, s in scores["per_type"].items():
        lines.append(
            f"{kind:>17}: precision: {100 * s['precision']:6.2f}%; recall: {100 * s['recall']:6.2f}%; "
            f"FB1: {100 * s['f1']:6.2f}  {s['predicted']}"
        )
    return "\n".join(lines) + "\n"
