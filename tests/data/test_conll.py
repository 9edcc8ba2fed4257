"""Tagging corpora: CoNLL-U and CoNLL-2003 read and written back exactly, raw text, tag schemes."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import conllu
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.conll import (
    Sentence,
    bio_to_bioes,
    bio_to_iob1,
    bioes_to_bio,
    iob1_to_bio,
    read_conll2003,
    read_conllu,
    read_raw,
    write_conll2003,
    write_conllu,
)
from rnnkit.errors import RnnkitError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EWT = SHARED / "ud-english-ewt"
CONLL2003 = SHARED / "conll2003"

CONLLU = """\
# sent_id = s1
# text = So I don't think so
1\tSo\tso\tADV\tRB\t_\t5\tadvmod\t_\t_
2\tI\tI\tPRON\tPRP\tCase=Nom\t5\tnsubj\t_\t_
3-4\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
3\tdo\tdo\tAUX\tVBP\t_\t5\taux\t_\t_
4\tn't\tnot\tPART\tRB\t_\t5\tadvmod\t_\t_
5\tthink\tthink\tVERB\tVB\t_\t0\troot\t_\t_
5.1\tthink\tthink\tVERB\tVB\t_\t_\t_\t2:nsubj\tCopyOf=5
6\tso\tso\tADV\tRB\t_\t5\tadvmod\t_\tSpaceAfter=No

# sent_id = s2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
2\t.\t.\tPUNCT\t.\t_\t1\tpunct\t_\t_

"""

CONLL2003_TEXT = """\
-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
lamb NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- O O

France NNP I-NP I-LOC
Britain NNP I-NP B-LOC
talk VBP I-VP O

"""


def write(tmp_path: Path, text: str, name: str = "f.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# CoNLL-U


def test_conllu_reads_words_and_tags(tmp_path):
    path = write(tmp_path, CONLLU, "a.conllu")
    first, second = read_conllu(path)
    assert first.words == ["So", "I", "do", "n't", "think", "so"]
    assert first.tags == ["ADV", "PRON", "AUX", "PART", "VERB", "ADV"]
    assert first.word_lines == [2, 3, 5, 6, 7, 9]
    assert (first.source, first.line, second.line) == (str(path), 1, 12)
    assert second.words == ["Yes", "."] and len(second.lines) == 3
    assert read_conllu(path, column="xpos")[0].tags == ["RB", "PRP", "VBP", "RB", "VB", "RB"]


def test_conllu_agrees_with_the_conllu_library(tmp_path):
    ours = read_conllu(write(tmp_path, CONLLU, "a.conllu"))
    theirs = conllu.parse(CONLLU)
    for sentence, tokens in zip(ours, theirs, strict=True):
        words = [t for t in tokens if isinstance(t["id"], int)]
        assert sentence.words == [t["form"] for t in words]
        assert sentence.tags == [t["upos"] for t in words]


@pytest.mark.parametrize("column", ["upos", "xpos"])
def test_conllu_writer_gives_the_file_back_byte_for_byte(tmp_path, column):
    sentences = read_conllu(write(tmp_path, CONLLU, "a.conllu"), column)
    write_conllu(sentences, [s.tags for s in sentences], tmp_path / "out.conllu")
    assert (tmp_path / "out.conllu").read_bytes() == CONLLU.encode()


@pytest.mark.parametrize(("column", "index"), [("upos", 3), ("xpos", 4)])
def test_conllu_writer_changes_only_the_tag_column_of_words(tmp_path, column, index):
    sentences = read_conllu(write(tmp_path, CONLLU, "a.conllu"), column)
    predictions = [[f"P{i}" for i in range(len(s.words))] for s in sentences]
    write_conllu(sentences, predictions, tmp_path / "out.conllu")
    before = CONLLU.split("\n")
    after = (tmp_path / "out.conllu").read_text().split("\n")
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [2, 3, 5, 6, 7, 9, 12, 13]  # the word lines; not 3-4, 5.1 or comments
    for i in changed:
        old, new = before[i].split("\t"), after[i].split("\t")
        assert new[index].startswith("P") and old[:index] + old[index + 1 :] == new[:index] + new[index + 1 :]


def test_conllu_missing_final_blank_line(tmp_path):
    sentences = read_conllu(write(tmp_path, CONLLU.rstrip("\n"), "a.conllu"))
    assert [len(s.words) for s in sentences] == [6, 2]
    write_conllu(sentences, [s.tags for s in sentences], tmp_path / "out.conllu")
    assert (tmp_path / "out.conllu").read_text() == CONLLU  # written in the standard form


def replace_line(number: int, new: str) -> str:
    lines = CONLLU.split("\n")
    lines[number - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (replace_line(4, "2\tI\tI\tPRON"), 4, "expected 10 tab-separated columns, got 4"),
        (replace_line(4, "2 I I PRON PRP _ 5 nsubj _ _"), 4, "expected 10 tab-separated columns, got 1"),
        (replace_line(4, "x\tI\tI\tPRON\tPRP\t_\t5\tnsubj\t_\t_"), 4, "bad ID 'x'"),
        (replace_line(4, "3\tI\tI\tPRON\tPRP\t_\t5\tnsubj\t_\t_"), 4, "word ID 3; expected 2"),
        (replace_line(5, "4-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_"), 5, "range ID 4-3; expected 3-m"),
        (replace_line(9, "4.1\tx\t_\t_\t_\t_\t_\t_\t_\t_"), 9, "empty node ID 4.1; expected 5.k"),
        (replace_line(4, "2\tI\t\tPRON\tPRP\t_\t5\tnsubj\t_\t_"), 4, "column 3 is empty"),
        (replace_line(11, "# sent_id = s2"), 11, "a comment after word lines"),
        (CONLLU + "# a lonely comment\n", 16, "a sentence with no word lines"),
        (replace_line(5, "3-7\tdon't\t_\t_\t_\t_\t_\t_\t_\t_"), 1, "a range reaches word 7"),
    ],
)
def test_conllu_errors_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, text, "bad.conllu")
    with pytest.raises(RnnkitError) as err:
        read_conllu(path)
    assert str(err.value).startswith(f"{path}: line {line}: ")
    assert expected in str(err.value)


def test_conllu_empty_file_and_bad_column(tmp_path):
    with pytest.raises(RnnkitError, match="empty"):
        read_conllu(write(tmp_path, "\n\n", "empty.conllu"))
    with pytest.raises(RnnkitError, match="column='lemma'"):
        read_conllu(write(tmp_path, CONLLU, "a.conllu"), column="lemma")


def test_writers_check_predictions(tmp_path):
    sentences = read_conllu(write(tmp_path, CONLLU, "a.conllu"))
    out = tmp_path / "out.conllu"
    with pytest.raises(RnnkitError, match="predictions for 1 sentences; expected 2"):
        write_conllu(sentences, [sentences[0].tags], out)
    with pytest.raises(
        RnnkitError, match=r"a\.conllu: line 12: 1 predicted tags; expected one per word \(2\)"
    ):
        write_conllu(sentences, [sentences[0].tags, ["X"]], out)
    with pytest.raises(RnnkitError, match="predicted tag 'A B'"):
        write_conll2003(sentences, [sentences[0].tags, ["X", "A B"]], out)
    with pytest.raises(RnnkitError, match="not read from a CoNLL-U file"):
        write_conllu([Sentence(["a"], ["X"])], [["X"]], out)
    assert not out.exists()


# CoNLL-2003


def test_conll2003_reads_sentences_documents_and_tags(tmp_path):
    path = write(tmp_path, CONLL2003_TEXT, "eng.train")
    sentences = read_conll2003(path)
    assert [s.words for s in sentences] == [
        ["EU", "rejects", "German", "lamb"],
        ["Peter", "Blackburn"],
        ["France", "Britain", "talk"],
    ]
    assert sentences[2].tags == ["I-LOC", "B-LOC", "O"]
    assert [s.line for s in sentences] == [3, 8, 13]
    assert [s.docstart for s in sentences] == [
        ["-DOCSTART-", "-X-", "O", "O"],
        None,
        ["-DOCSTART-", "-X-", "O", "O"],
    ]
    assert sentences[0].columns[2] == ["German", "JJ", "I-NP", "I-MISC"]


def test_conll2003_last_sentence_without_blank_line(tmp_path):
    sentences = read_conll2003(write(tmp_path, "a B-X\nb O", "x.txt"))
    assert sentences[0].words == ["a", "b"] and sentences[0].tags == ["B-X", "O"]


def test_conll2003_writer_adds_the_prediction_column(tmp_path):
    sentences = read_conll2003(write(tmp_path, CONLL2003_TEXT, "eng.train"))
    predictions = [["O"] * len(s.words) for s in sentences]
    write_conll2003(sentences, [s.tags for s in sentences], tmp_path / "gold", docstart=True)
    expected = "".join(
        line + (f" {line.split()[-1]}" if line else "") + "\n" for line in CONLL2003_TEXT.split("\n")
    )
    assert (tmp_path / "gold").read_text() == expected[:-1]  # line for line, the input's last "\n" aside
    write_conll2003(sentences, predictions, tmp_path / "pred")
    lines = (tmp_path / "pred").read_text().split("\n")
    assert lines[:6] == [
        "EU NNP I-NP I-ORG O",
        "rejects VBZ I-VP O O",
        "German JJ I-NP I-MISC O",
        "lamb NN I-NP O O",
        "",
        "Peter NNP I-NP I-PER O",
    ]
    assert not any("DOCSTART" in line for line in lines)


def test_conll2003_writer_without_columns(tmp_path):
    sentences = [Sentence(["a", "b"], ["B-X", "O"]), Sentence(["c"])]
    write_conll2003(sentences, [["O", "O"], ["B-Y"]], tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a B-X O\nb O O\n\nc B-Y\n\n"


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("a NN O\nb NN\n", 2, "expected 3 space-separated columns (as on line 1), got 2"),
        ("a NN O\n\nb NN I-NP O\n", 3, "expected 3 space-separated columns (as on line 1), got 4"),
        ("-DOCSTART- O\n\nword\n", 3, "expected a token and its tag, got one column"),
    ],
)
def test_conll2003_errors_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, text, "bad.txt")
    with pytest.raises(RnnkitError) as err:
        read_conll2003(path)
    assert str(err.value) == f"{path}: line {line}: {expected}"


def test_conll2003_without_sentences(tmp_path):
    with pytest.raises(RnnkitError, match="no sentences"):
        read_conll2003(write(tmp_path, "-DOCSTART- -X- O O\n\n", "x.txt"))


# Raw text


def test_raw_text(tmp_path):
    path = write(tmp_path, "  Hello   world .\n\n\tagain\n", "raw.txt")
    sentences = read_raw(path)
    assert [(s.words, s.tags, s.line) for s in sentences] == [
        (["Hello", "world", "."], None, 1),
        (["again"], None, 3),
    ]
    with pytest.raises(RnnkitError, match="empty"):
        read_raw(write(tmp_path, " \n", "empty.txt"))


# Tag schemes


def test_schemes_by_hand():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG", "O", "B-MISC"]
    bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "B-ORG", "I-ORG", "O", "B-MISC"]
    bioes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "S-ORG", "B-ORG", "E-ORG", "O", "S-MISC"]
    assert iob1_to_bio(iob1) == bio
    assert bio_to_iob1(bio) == [*iob1[:-1], "I-MISC"]  # a B- after O is not IOB1
    assert bio_to_bioes(bio) == bioes
    assert bioes_to_bio(bioes) == bio
    assert bio_to_bioes(["O", "I-X", "I-X", "I-Y"]) == ["O", "B-X", "E-X", "S-Y"]  # I- after O starts a chunk
    assert bio_to_bioes(["B-a-b", "I-a-b"]) == ["B-a-b", "E-a-b"]  # types may hold '-'
    assert [f([]) for f in (iob1_to_bio, bio_to_iob1, bio_to_bioes, bioes_to_bio)] == [[]] * 4


@pytest.mark.parametrize(
    ("convert", "tags", "message"),
    [
        (iob1_to_bio, ["O", "E-PER"], "tag 1 'E-PER': expected O, B-TYPE, I-TYPE (IOB1)"),
        (bio_to_bioes, ["B-"], "tag 0 'B-': expected O, B-TYPE, I-TYPE (BIO)"),
        (bio_to_iob1, ["PER"], "tag 0 'PER': expected O"),
        (bioes_to_bio, ["X-PER"], "tag 0 'X-PER': expected O, B-TYPE, I-TYPE, E-TYPE, S-TYPE (BIOES)"),
    ],
)
def test_scheme_errors(convert, tags, message):
    with pytest.raises(RnnkitError, match=re.escape(message)):
        convert(tags)


# Reference encoders: chunks (None for an outside word, or (type, length)) to each scheme.
def encode(chunks, scheme):
    tags, previous = [], None
    for chunk in chunks:
        if chunk is None:
            tags.append("O")
            previous = None
            continue
        kind, length = chunk
        if scheme == "iob1":
            tags += ["B-" + kind if kind == previous else "I-" + kind] + ["I-" + kind] * (length - 1)
        elif scheme == "bio":
            tags += ["B-" + kind] + ["I-" + kind] * (length - 1)
        elif length == 1:
            tags.append("S-" + kind)
        else:
            tags += ["B-" + kind] + ["I-" + kind] * (length - 2) + ["E-" + kind]
        previous = kind
    return tags


def spans(tags):
    """Chunks as conlleval reads IOB1 and BIO: B- or an I- of a new type starts one."""
    found, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, t = tag.partition("-")
        if kind is not None and (prefix != "I" or t != kind):
            found.add((start, i, kind))
            kind = None
        if prefix in ("B", "I") and kind is None:
            start, kind = i, t
    return found


chunk_lists = st.lists(
    st.none() | st.tuples(st.sampled_from(["PER", "LOC", "B-X"]), st.integers(1, 4)), max_size=12
)
any_tags = st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=15)


@given(chunk_lists)
def test_schemes_agree_with_reference_encoders(chunks):
    iob1, bio, bioes = encode(chunks, "iob1"), encode(chunks, "bio"), encode(chunks, "bioes")
    assert iob1_to_bio(iob1) == bio
    assert bio_to_iob1(bio) == iob1
    assert bio_to_bioes(bio) == bioes
    assert bioes_to_bio(bioes) == bio
    assert bio_to_iob1(iob1_to_bio(iob1)) == iob1
    assert bioes_to_bio(bio_to_bioes(bio)) == bio


@given(any_tags)
def test_conversions_keep_the_chunks_of_any_tags(tags):
    bio = iob1_to_bio(tags)
    assert spans(bio) == spans(tags) == spans(bio_to_iob1(tags)) == spans(bioes_to_bio(bio_to_bioes(tags)))
    assert iob1_to_bio(bio_to_iob1(bio)) == bio  # BIO is a fixed point once normalised
    assert bioes_to_bio(bio_to_bioes(bio)) == bio


# The real data (skipped when ../shared/data is absent)


@cache
def ewt(split: str) -> list[Sentence]:
    return read_conllu(EWT / f"en_ewt-ud-{split}.conllu")


@cache
def conll2003(split: str) -> list[Sentence]:
    return read_conll2003(CONLL2003 / f"eng.{split}")


@pytest.mark.skipif(not EWT.is_dir(), reason="needs ../shared/data/ud-english-ewt")
@pytest.mark.parametrize(
    ("split", "sentences", "words", "multiword", "empty"),
    [("train", 12544, 204577, 2614, 37), ("dev", 2001, 25147, 359, 4), ("test", 2077, 25094, 354, 2)],
)
def test_ewt_counts(split, sentences, words, multiword, empty):
    data = ewt(split)
    ids = [line.split("\t", 1)[0] for s in data for line in s.lines if not line.startswith("#")]
    assert len(data) == sentences
    assert sum(len(s.words) for s in data) == words
    assert sum("-" in i for i in ids) == multiword and sum("." in i for i in ids) == empty


@pytest.mark.skipif(not EWT.is_dir(), reason="needs ../shared/data/ud-english-ewt")
def test_ewt_dev_round_trip_and_conllu_library(tmp_path):
    data = ewt("dev")
    write_conllu(data, [s.tags for s in data], tmp_path / "dev.conllu")
    assert (tmp_path / "dev.conllu").read_bytes() == (EWT / "en_ewt-ud-dev.conllu").read_bytes()
    theirs = conllu.parse((EWT / "en_ewt-ud-dev.conllu").read_text(encoding="utf-8"))
    for ours, tokens in zip(data, theirs, strict=True):
        words = [t for t in tokens if isinstance(t["id"], int)]
        assert ours.words == [t["form"] for t in words] and ours.tags == [t["upos"] for t in words]


@pytest.mark.skipif(not CONLL2003.is_dir(), reason="needs ../shared/data/conll2003")
@pytest.mark.parametrize(
    ("split", "documents", "sentences", "tokens", "entities"),
    [
        ("train", 946, 14041, 203621, {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}),
        ("testa", 216, 3250, 51362, {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}),
        ("testb", 231, 3453, 46435, {"PER": 1617, "LOC": 1668, "ORG": 1661, "MISC": 702}),
    ],
)
def test_conll2003_counts(split, documents, sentences, tokens, entities):
    data = conll2003(split)
    assert sum(s.docstart is not None for s in data) == documents
    assert len(data) == sentences
    assert sum(len(s.words) for s in data) == tokens
    assert Counter(t[2:] for s in data for t in iob1_to_bio(s.tags) if t.startswith("B-")) == entities


@pytest.mark.skipif(not CONLL2003.is_dir(), reason="needs ../shared/data/conll2003")
def test_conll2003_real_tags_are_iob1_but_two():
    # Two B- tags of eng.train open a chunk after O, which IOB1 does not allow; the
    # conversion still reads them as chunk starts, like conlleval.
    broken = [
        (s.line + i, s.words[i])
        for split in ("train", "testa", "testb")
        for s in conll2003(split)
        if bio_to_iob1(iob1_to_bio(s.tags)) != s.tags
        for i, tag in enumerate(s.tags)
        if tag.startswith("B-") and (i == 0 or s.tags[i - 1][2:] != tag[2:])
    ]
    assert broken == [(152428, "Atlanta"), (175436, "Urdu-speaking")]


@pytest.mark.skipif(not CONLL2003.is_dir(), reason="needs ../shared/data/conll2003")
def test_conll2003_writer_lines_up_with_the_real_file(tmp_path):
    data = conll2003("train")
    write_conll2003(data, [s.tags for s in data], tmp_path / "out", docstart=True)
    original = (CONLL2003 / "eng.train").read_text(encoding="utf-8").split("\n")
    expected = "\n".join(line + f" {line.split()[-1]}" if line else "" for line in original)
    assert (tmp_path / "out").read_text() == expected
