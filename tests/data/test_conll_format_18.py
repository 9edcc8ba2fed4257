"""Format by content, weighed over many lines: a malformed corpus is an error naming its line,
never raw text; raw text stays raw text (issue 18).

Before, the sniffer wanted *every* line of the first blocks to agree, so one CoNLL-2003 line
with a column missing (or a CoNLL-U file whose first word line lost a column) made the whole
file "plain text": ``rnnkit predict`` then tagged the column values as words and exited 0.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import write_toy_treebank
from rnnkit.data.conll import SNIFF_LINES, detect_format, read_conll2003, read_conllu, sniff_format
from rnnkit.data.sst import read_sentences
from rnnkit.errors import RnnkitError

CONLL2003 = (
    "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O\n"
    "to TO I-VP O\nboycott VB I-VP O\nBritish JJ I-NP I-MISC\nlamb NN I-NP O\n. . O O\n\n"
    "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
)
CONLLU = (
    "# sent_id = 1\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n"
    "3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_\n4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n"
)


def replace_line(text: str, number: int, new: str) -> str:
    lines = text.split("\n")
    lines[number - 1] = new
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        # the case: one token line lost its chunk column
        (
            replace_line(CONLL2003, 2, "rejects VBZ O"),
            2,
            "expected 4 space-separated columns (as on line 1), got 3",
        ),
        (
            replace_line(CONLL2003, 1, "EU I-ORG"),
            1,
            "expected 4 space-separated columns (as on line 2), got 2",
        ),
        (replace_line(CONLL2003, 5, "to"), 5, "expected 4 space-separated columns (as on line 1), got 1"),
        (
            replace_line(CONLL2003, 11, "Peter NNP I-NP I-PER extra"),
            11,
            "expected 4 space-separated columns (as on line 1), got 5",
        ),
    ],
)
def test_a_malformed_conll2003_file_is_an_error_naming_the_line(tmp_path, text, line, expected):
    path = tmp_path / "ner.txt"
    path.write_text(text)
    for name, sniff in (
        (str(path), lambda: detect_format(path)),
        ("<stdin>", lambda: sniff_format("<stdin>", text=text)),
    ):
        with pytest.raises(RnnkitError) as err:
            sniff()
        message = str(err.value)
        assert message.startswith(f"{name}: line {line}: {expected}; ") and "\n" not in message
        assert "read as CoNLL-2003 because" in message and "--format text" in message
    with pytest.raises(RnnkitError) as err:  # --format conll2003 says the same, naming the line
        read_conll2003(path)
    assert str(err.value) == f"{path}: line {line}: {expected}"


def test_a_malformed_line_past_the_sniffed_lines_is_the_readers_to_name(tmp_path):
    sentence = "the DT B-NP O\ncat NN I-NP O\n\n"
    text = sentence * SNIFF_LINES + "sat VBD O\n"
    path = tmp_path / "long.conll"
    path.write_text(text)
    assert sniff_format(path) == "conll2003"
    with pytest.raises(
        RnnkitError, match=rf"^{path}: line {3 * SNIFF_LINES + 1}: expected 4 space-separated"
    ):
        read_conll2003(path)


@pytest.mark.parametrize(
    "text",
    [
        "the cat sat on the mat .\nI O\na dog ran to the park .\nit was late .\n",  # one line that could be
        "I O\n",
        "Send me an E-mail\nBuy the Mercedes S-Class\nok\nsee you\nthanks a lot\n",
        "Who is I-95 ?\nWhere is B-52 ?\n",  # tag-like endings, but widths differ
        "hello world\nbig cat\nsmall dog\n",  # the same width, no tags
    ],
)
def test_raw_text_stays_raw_text(tmp_path, text):
    path = tmp_path / "sentences.txt"
    path.write_text(text)
    assert detect_format(path) == ("text", None)


def test_a_conll2003_file_that_is_all_right_is_still_read(tmp_path):
    path = tmp_path / "eng.testa"
    path.write_text("-DOCSTART- -X- O O\n\n" + CONLL2003)
    assert detect_format(path) == ("conll2003", None)
    assert sniff_format("x", text=CONLL2003) == "conll2003"
    assert [len(s.words) for s in read_conll2003(path)] == [9, 2]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (
            replace_line(CONLLU, 2, "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_"),
            2,
            "expected 10 tab-separated columns, got 9",
        ),
        (
            replace_line(CONLLU, 2, "1 The the DET DT _ 2 det _ _"),
            2,
            "expected 10 tab-separated columns, got 1",
        ),
        (replace_line(CONLLU, 4, "3\tsat\tsit\tVERB"), 4, "expected 10 tab-separated columns, got 4"),
    ],
)
def test_a_malformed_conllu_file_is_still_conllu_and_its_line_is_named(tmp_path, text, line, expected):
    path = tmp_path / "gum.conllu"
    path.write_text(text)
    assert detect_format(path) == ("conllu", None)  # was plain text when the first word line was bad
    with pytest.raises(RnnkitError) as err:
        read_conllu(path)
    assert str(err.value) == f"{path}: line {line}: {expected}"


def test_sst_trees_by_content():
    trees = "(3 (2 It) (4 (2 's) (3 great)))\n(1 (1 bad) (2 .))\n(2 (2 so) (2 so))\n"
    assert read_sentences("x", text=trees)[1] == ["bad", "."]
    with pytest.raises(RnnkitError, match=r"^x: line 2: column 1: word '1'"):  # was read as text
        read_sentences("x", text=trees.replace("(1 (1 bad)", "1 (1 bad)"))
    assert read_sentences("x", text="(laughs) that was funny\nno it was not\n")[0][0] == "(laughs)"


def test_predict_refuses_the_malformed_file_in_one_line(tmp_path):
    """The issue's command: a tagger given a CoNLL-2003 file with a column missing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def rnnkit(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "rnnkit", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    data, run = write_toy_treebank(tmp_path / "tb", train=20), tmp_path / "run"
    tiny = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
    assert rnnkit("train", "--task=tag", "--data", str(data), "--out", str(run), *tiny).returncode == 0
    bad = tmp_path / "ner.conll"
    bad.write_text(replace_line(CONLL2003, 2, "rejects VBZ O"))
    proc = rnnkit("predict", str(run), str(bad))
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: line 2: expected 4 space-separated columns" in proc.stderr
