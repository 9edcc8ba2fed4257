"""Tagging metrics: conlleval's chunks and span F1 against seqeval, hand-worked cases, token metrics.

Oracles. seqeval 1.2.2 in its default (non-strict) mode finds chunks with conlleval.pl's
rules, so on B/I/O tags (IOB1, BIO; ill-formed sequences included) it must agree with
:func:`span_scores` to 1e-12. A transcription of conlleval.pl's own rule table below
checks the same thing against the spec directly.

Where they disagree: only on BIOES tags. conlleval.pl has no rule for ``S-`` and does not
end a chunk at ``E-X`` followed by ``B-X``/``S-X``, so it reads ``B-X E-X B-X E-X`` and
``S-X S-X`` as one chunk each; seqeval's default mode (and rnnkit) end a chunk after
every ``E-``/``S-`` and start one at every ``B-``/``S-``. The BIOES property test is
therefore against seqeval, and ``test_conlleval_pl_misreads_bioes`` pins the difference.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from rnnkit.errors import RnnkitError
from rnnkit.tasks.tagging_metrics import (
    chunks,
    confusion_matrix,
    format_label_report,
    format_report,
    label_report,
    label_scores,
    span_scores,
    token_accuracy,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# conlleval.pl's endOfChunk / startOfChunk as (previous prefix, current prefix) pairs, plus
# its type rule: a chunk ends at a type change after a chunk tag and starts at a type
# change onto a chunk tag. Sentence boundaries read as O.
CONLLEVAL_END = {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
CONLLEVAL_START = {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}


def conlleval_chunks(tags):
    found, prev, prev_type, start = [], "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        cur, _, kind = tag.partition("-")
        if (prev, cur) in CONLLEVAL_END or (prev != "O" and prev_type != kind):
            found.append((prev_type, start, i))
        if (prev, cur) in CONLLEVAL_START or (cur != "O" and prev_type != kind):
            start = i
        prev, prev_type = cur, kind
    return found


def seqeval_scores(gold, pred):
    """seqeval's default-mode figures; its zero-division warnings are expected and silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(gold, pred, output_dict=True)
        overall = (precision_score(gold, pred), recall_score(gold, pred), f1_score(gold, pred))
    per_type = {k: v for k, v in report.items() if not k.endswith(" avg")}
    return overall, per_type


def seqeval_sentence_chunks(tags):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


# --- generated corpora ---------------------------------------------------------------


@st.composite
def well_formed(draw, types, scheme):
    """One sentence of chunks and O runs, tagged as ``scheme`` writes them."""
    tags = []
    prev_kind = None
    for kind, length in draw(st.lists(st.tuples(st.sampled_from([None, *types]), st.integers(1, 3)))):
        if kind is None:
            tags += ["O"] * length
        elif scheme == "bio":
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
        elif scheme == "iob1":  # B- only where a chunk directly follows one of its type
            first = "B" if kind == prev_kind else "I"
            tags += [f"{first}-{kind}"] + [f"I-{kind}"] * (length - 1)
        elif length == 1:
            tags += [f"S-{kind}"]
        else:
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (length - 2) + [f"E-{kind}"]
        prev_kind = kind
    return tags


@st.composite
def corpora(draw, prefixes):
    """(gold, pred): gold well-formed or any tag soup; pred a noisy copy of gold."""
    types = draw(st.sampled_from([("PER", "LOC"), ("PER", "LOC", "ORG")]))
    any_tag = st.sampled_from(["O", *(f"{p}-{t}" for p in prefixes for t in types)])
    scheme = "bioes" if "S" in prefixes else draw(st.sampled_from(["iob1", "bio"]))
    sentence = st.one_of(well_formed(types, scheme), st.lists(any_tag, max_size=10))
    gold = draw(st.lists(sentence, min_size=1, max_size=5))
    noise = draw(st.floats(0.0, 0.6))
    pred = [
        [draw(any_tag) if draw(st.floats(0, 1)) < noise else tag for tag in sentence] for sentence in gold
    ]
    return gold, pred


def assert_matches_seqeval(gold, pred):
    ours = span_scores(gold, pred)
    (precision, recall, f1), per_type = seqeval_scores(gold, pred)
    assert ours["precision"] == pytest.approx(precision, abs=1e-12)
    assert ours["recall"] == pytest.approx(recall, abs=1e-12)
    assert ours["f1"] == pytest.approx(f1, abs=1e-12)
    assert sorted(ours["per_type"]) == sorted(per_type)
    for kind, theirs in per_type.items():
        mine = ours["per_type"][kind]
        assert mine["precision"] == pytest.approx(theirs["precision"], abs=1e-12)
        assert mine["recall"] == pytest.approx(theirs["recall"], abs=1e-12)
        assert mine["f1"] == pytest.approx(theirs["f1-score"], abs=1e-12)
        assert mine["support"] == theirs["support"]
    for sentence in gold + pred:
        assert chunks(sentence) == seqeval_sentence_chunks(sentence)


@PROPERTY
@given(corpora("BI"))
def test_span_scores_match_seqeval_on_iob1_and_bio(pair):
    assert_matches_seqeval(*pair)


@PROPERTY
@given(corpora("BI"))
def test_chunks_follow_conlleval_pl_rules_on_iob(pair):
    for sentence in pair[0] + pair[1]:
        assert chunks(sentence, scheme="iob1") == conlleval_chunks(sentence)
        assert chunks(sentence, scheme="bio") == conlleval_chunks(sentence)


@PROPERTY
@given(corpora("BIES"))
def test_span_scores_match_seqeval_on_bioes(pair):
    # conlleval.pl itself disagrees here (see the module docstring); seqeval does not.
    assert_matches_seqeval(*pair)


def test_conlleval_pl_misreads_bioes():
    assert conlleval_chunks(["B-X", "E-X", "B-X", "E-X"]) == [("X", 0, 4)]
    assert chunks(["B-X", "E-X", "B-X", "E-X"]) == [("X", 0, 2), ("X", 2, 4)]
    assert conlleval_chunks(["S-X", "S-X"]) == [("X", 0, 2)]
    assert chunks(["S-X", "S-X"]) == [("X", 0, 1), ("X", 1, 2)]


# --- hand-worked chunks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["I-PER", "I-PER", "B-PER"], [("PER", 0, 2), ("PER", 2, 3)]),
        (["O", "I-LOC"], [("LOC", 1, 2)]),
        (["I-ORG", "I-LOC"], [("ORG", 0, 1), ("LOC", 1, 2)]),
        (["B-MISC", "I-MISC", "O"], [("MISC", 0, 2)]),
        (["B-MISC"], [("MISC", 0, 1)]),
        ([], []),
        (["O", "O", "O"], []),
        (["B-PER", "I-LOC", "I-LOC", "O", "I-PER"], [("PER", 0, 1), ("LOC", 1, 3), ("PER", 4, 5)]),
        (["B-ORG-X", "I-ORG-X"], [("ORG-X", 0, 2)]),
    ],
)
def test_iob1_chunks_by_hand(tags, expected):
    assert chunks(tags, scheme="iob1") == expected


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-PER"], [("PER", 0, 1), ("LOC", 1, 4), ("PER", 5, 6)]),
        (["B-LOC", "E-LOC", "I-LOC"], [("LOC", 0, 2), ("LOC", 2, 3)]),
        (["O", "E-PER", "E-PER"], [("PER", 1, 2), ("PER", 2, 3)]),
        (["B-PER", "I-PER", "S-PER"], [("PER", 0, 2), ("PER", 2, 3)]),
        (["B-PER", "E-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
    ],
)
def test_bioes_chunks_by_hand(tags, expected):
    assert chunks(tags, scheme="bioes") == expected


def test_right_type_wrong_boundary_is_wrong():
    s = span_scores([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    assert (s["gold_chunks"], s["pred_chunks"], s["correct_chunks"]) == (1, 1, 0)
    assert s["precision"] == s["recall"] == s["f1"] == 0.0
    assert s["accuracy"] == pytest.approx(2 / 3)


def test_chunks_never_span_sentences():
    gold = [["B-PER"], ["I-PER", "O"]]
    s = span_scores(gold, gold)
    assert (s["gold_chunks"], s["correct_chunks"], s["tokens"]) == (2, 2, 3)
    assert s["f1"] == 1.0


def test_pred_type_unseen_in_gold_is_just_wrong():
    s = span_scores([["B-PER", "O"]], [["B-FOO", "O"]])
    assert s["per_type"]["FOO"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
        "predicted": 1,
        "correct": 0,
    }
    assert s["per_type"]["PER"]["support"] == 1
    assert s["f1"] == 0.0


def test_empty_corpus_scores_zero():
    s = span_scores([], [])
    assert (s["precision"], s["recall"], s["f1"], s["tokens"], s["per_type"]) == (0.0, 0.0, 0.0, 0, {})


@pytest.mark.parametrize(
    ("tags", "scheme", "message"),
    [
        (["E-PER"], "bio", "token 0: tag 'E-PER' is not a bio chunk tag"),
        (["O", "PER"], "auto", "token 1: tag 'PER' is not a auto chunk tag"),
        (["B-"], "auto", "tag 'B-'"),
        (["O"], "iob2", "scheme='iob2' is unknown"),
    ],
)
def test_bad_tags_and_schemes_are_user_errors(tags, scheme, message):
    with pytest.raises(RnnkitError, match=message):
        chunks(tags, scheme=scheme)


def test_bad_tag_in_corpus_names_the_sentence():
    with pytest.raises(RnnkitError, match="pred sentence 1, token 2: tag 'NN'"):
        span_scores([["O"], ["O", "O", "O"]], [["O"], ["O", "O", "NN"]])


def test_format_report_is_conlleval_layout():
    s = span_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
    assert format_report(s) == (
        "processed 4 tokens with 2 phrases; found: 2 phrases; correct: 1.\n"
        "accuracy:  75.00%; precision:  50.00%; recall:  50.00%; FB1:  50.00\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
        "              ORG: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )
    assert format_report(span_scores([[]], [[]])) == (
        "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
    )


# --- token level ------------------------------------------------------------------------

GOLD = [["DT", "NN", "DT"], ["VB"]]
PRED = [["DT", "DT", "VB"], ["VB"]]


def test_token_accuracy():
    assert token_accuracy(GOLD, PRED) == 0.5
    assert token_accuracy(GOLD, GOLD) == 1.0
    assert token_accuracy([[]], [[]]) == 0.0


def test_confusion_matrix_by_hand():
    labels, m = confusion_matrix(GOLD, PRED)
    assert labels == ["DT", "NN", "VB"]
    assert m.dtype == np.int64
    #                          pred DT NN VB
    np.testing.assert_array_equal(m, [[1, 0, 1], [1, 0, 0], [0, 0, 1]])  # gold DT, NN, VB
    labels, m = confusion_matrix(GOLD, PRED, labels=["VB", "NN", "DT", "JJ"])
    np.testing.assert_array_equal(m, [[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_confusion_matrix_label_errors():
    with pytest.raises(RnnkitError, match="pred sentence 0 has tag 'VB', which is not in labels"):
        confusion_matrix(GOLD, PRED, labels=["DT", "NN"])
    with pytest.raises(RnnkitError, match="distinct"):
        confusion_matrix(GOLD, PRED, labels=["DT", "NN", "VB", "DT"])


def test_label_scores_by_hand():
    scores = label_scores(GOLD, PRED)
    assert scores["DT"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["NN"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["VB"]["precision"] == 0.5 and scores["VB"]["recall"] == 1.0
    assert scores["VB"]["f1"] == pytest.approx(2 / 3)


def test_label_report_text_by_hand():
    report = label_report(GOLD, PRED, labels=["DT", "NN", "VB", "JJ"])  # JJ: a class never seen
    assert report["confusion"] == [[1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert report["per_label"]["JJ"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert format_label_report(report).splitlines() == [
        "       label  precision   recall        F1  support",
        "          DT     50.00%   50.00%   50.00%        2",
        "          NN      0.00%    0.00%    0.00%        1",
        "          VB     50.00%  100.00%   66.67%        1",
        "          JJ      0.00%    0.00%    0.00%        0",
        "",
        "    accuracy                       50.00%        4",
        "   macro avg     25.00%   37.50%   29.17%        4",
        "weighted avg     37.50%   50.00%   41.67%        4",
        "",
        "confusion (rows gold, columns predicted):",
        "             DT NN VB JJ",
        "          DT  1  .  1  .",
        "          NN  1  .  .  .",
        "          VB  .  .  1  .",
        "          JJ  .  .  .  .",
    ]


@pytest.mark.parametrize(
    "fn", [token_accuracy, span_scores, confusion_matrix, label_scores], ids=lambda f: f.__name__
)
def test_shape_mismatches_are_user_errors(fn):
    with pytest.raises(RnnkitError, match="sentence 1: gold has 2 tags but pred has 1"):
        fn([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(RnnkitError, match="gold has 2 sentences but pred has 1"):
        fn([["O"], ["O"]], [["O"]])
    with pytest.raises(RnnkitError, match="sentence 0 of pred is the string"):
        fn([["O", "O"]], ["OO"])
