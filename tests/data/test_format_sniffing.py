"""A file to tag is known by its content (CoNLL-U, CoNLL-2003 or text), not by its name alone."""

from __future__ import annotations

import pytest

from rnnkit.data.conll import (
    SNIFF_BYTES,
    detect_format,
    read_conll2003,
    read_conllu,
    read_raw,
    sniff_format,
)
from rnnkit.data.sst import read_sentences
from rnnkit.errors import RnnkitError

CONLLU = (
    "# newdoc id = GUM_academic_art\n# sent_id = 1\n# text = Aesthetic Appreciation\n"
    "1\tAesthetic\taesthetic\tADJ\tJJ\tDegree=Pos\t2\tamod\t_\t_\n"
    "2\tAppreciation\tappreciation\tNOUN\tNN\tNumber=Sing\t0\troot\t_\t_\n\n"
)
CONLL2003 = "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CONLLU, "conllu"),
        (CONLLU.split("# text = Aesthetic Appreciation\n")[1], "conllu"),  # no comments
        ("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\t_\tAUX\t_\t_\t0\t_\t_\t_\n", "conllu"),  # a range first
        ("\n\n" + CONLLU, "conllu"),
        ("-DOCSTART- -X- O O\n\n" + CONLL2003, "conll2003"),
        ("-DOCSTART- -X- -X- O\n", "conll2003"),
        (CONLL2003, "conll2003"),
        ("Paris B-LOC\nis O\n\nRome B-LOC\n", "conll2003"),
        ("the cat sat on the mat .\na dog ran\n", "text"),
        ("hello world\nbig cat\n", "text"),  # two columns, but no entity tags
        ("# a heading\nsome text here\n", "text"),  # a comment, then no CoNLL-U word line
        ("1\tword\tonly three\n", "text"),  # an ID, but not 10 columns
    ],
)
def test_formats_are_known_by_their_first_lines(tmp_path, text, expected):
    path = tmp_path / "data"
    path.write_text(text, encoding="utf-8")
    assert sniff_format(path) == expected
    assert sniff_format("anything", text=text) == expected  # read already (standard input)


def test_only_a_bounded_prefix_is_read(tmp_path):
    path = tmp_path / "big.conllu"
    sentence = CONLLU.split("# newdoc id = GUM_academic_art\n")[1]
    path.write_text(CONLLU + sentence * (3 * SNIFF_BYTES // len(sentence)))
    assert path.stat().st_size > 2 * SNIFF_BYTES
    assert sniff_format(path) == "conllu"
    (tmp_path / "big.txt").write_text("word " * SNIFF_BYTES)  # one line longer than the prefix
    assert sniff_format(tmp_path / "big.txt") == "text"


@pytest.mark.parametrize(
    ("name", "text", "warned"),
    [
        ("gum-test.txt", CONLLU, "read as CoNLL-U although its name suggests plain text"),
        ("eng.testb", CONLLU, "read as CoNLL-U although its name suggests CoNLL-2003"),
        ("tagged.conllu", "the cat sat\n", "read as plain text although its name suggests CoNLL-U"),
        ("ner.txt", CONLL2003, "read as CoNLL-2003 although its name suggests plain text"),
        ("en_ewt-ud-test.conllu", CONLLU, None),
        ("eng.testa", CONLL2003, None),
        ("sentences.txt", "the cat sat\n", None),
        ("gum-test", CONLLU, None),  # a name that says nothing
    ],
)
def test_a_name_that_disagrees_with_the_content_is_named(tmp_path, name, text, warned):
    path = tmp_path / name
    path.write_text(text)
    fmt, warning = detect_format(path)
    assert fmt == sniff_format(path)
    if warned is None:
        assert warning is None
    else:
        assert warned in warning and str(path) in warning and "because it" in warning


def test_readers_take_text_already_read_and_name_it_in_errors():
    assert [s.words for s in read_conllu("<stdin>", text=CONLLU)] == [["Aesthetic", "Appreciation"]]
    assert read_conll2003("<stdin>", text=CONLL2003)[0].tags == ["I-ORG", "O", "I-MISC"]
    assert [s.words for s in read_raw("<stdin>", text="a b\n\nc\n")] == [["a", "b"], ["c"]]
    assert read_sentences("<stdin>", text="(3 (2 a) (3 b))\n") == [["a", "b"]]
    with pytest.raises(RnnkitError, match=r"^<stdin>: line 4: expected 10 tab-separated columns"):
        read_conllu("<stdin>", text=CONLLU.replace("\tDegree=Pos", ""))
    for read in (read_conllu, read_conll2003, read_raw, read_sentences):
        with pytest.raises(RnnkitError, match=r"^<stdin>: the .* is empty"):
            read("<stdin>", text=" \n")
