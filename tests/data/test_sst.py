"""Stanford Sentiment Treebank: tree parsing, label mappings, phrases and malformed trees."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from rnnkit.data.sst import parse_tree, read_sst
from rnnkit.errors import RnnkitError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SST = SHARED / "sst"

TREES = """\
(3 (2 It) (4 (2 's) (3 great)))
(2 (1 (2 not) (0 awful)) (2 .))
(1 (0 Bad))
"""


def test_parse_tree_spans_every_node_in_pre_order():
    words, root, phrases = parse_tree("(3 (2 It) (4 (2 's) (3 great)))")
    assert words == ["It", "'s", "great"]
    assert root == 3
    assert phrases == [(0, 3, 3), (0, 1, 2), (1, 3, 4), (1, 2, 2), (2, 3, 3)]


def test_parse_tree_keeps_a_no_break_space_inside_a_word():
    words, _, _ = parse_tree("(2 (2 8\xa01\\/2) (2 .))")
    assert words == ["8\xa01\\/2", "."]


@pytest.mark.parametrize(
    ("tree", "column", "problem"),
    [
        ("(3 (2 It) (4 great)", 20, "1 '(' not closed; unbalanced parentheses"),
        ("(3 (2 It)) (4 great))", 12, "'(' after the tree's last ')'"),
        ("(2 It))", 7, "')' with no open '('"),
        ("((2 It))", 1, "missing label after '('; expected 0-4"),
        ("(2 ())", 4, "missing label after '('"),
        ("(2 (It))", 5, "label 'It'; expected 0-4"),
        ("(7 It)", 2, "label '7'; expected 0-4"),
        ("(2 )", 4, "an empty node; expected a word or subtrees"),
        ("(2 It is)", 7, "a second word or a word after a subtree ('is')"),
        ("(2 It (2 is))", 7, "a subtree after a word"),
        ("(2 (2 It) is)", 11, "a word after a subtree ('is')"),
        ("It", 1, "word 'It' outside the tree"),
        ("   ", 1, "no tree"),
    ],
)
def test_parse_tree_errors(tree, column, problem):
    with pytest.raises(RnnkitError) as err:
        parse_tree(tree, "f.txt: line 3")
    assert str(err.value).startswith(f"f.txt: line 3: column {column}: ")
    assert problem in str(err.value)


def test_read_sst_labels_and_phrases(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text(TREES)
    assert read_sst(path) == [(["It", "'s", "great"], 3), (["not", "awful", "."], 2), (["Bad"], 1)]
    assert read_sst(path, classes=2) == [(["It", "'s", "great"], 1), (["Bad"], 0)]
    assert read_sst(path, phrases=True)[:5] == [
        (["It", "'s", "great"], 3),
        (["It"], 2),
        (["'s", "great"], 4),
        (["'s"], 2),
        (["great"], 3),
    ]
    assert len(read_sst(path, phrases=True)) == 5 + 5 + 2
    # SST-2 phrases: neutral phrases go, even inside a neutral sentence's tree.
    assert read_sst(path, classes=2, phrases=True) == [
        (["It", "'s", "great"], 1),
        (["'s", "great"], 1),
        (["great"], 1),
        (["not", "awful"], 0),
        (["awful"], 0),
        (["Bad"], 0),
        (["Bad"], 0),
    ]


def test_read_sst_errors_name_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("(3 (2 It) (3 great))\n\n(2 (2 a) (2 b)\n")
    with pytest.raises(RnnkitError, match="^" + re.escape(f"{path}: line 3: column 15: 1 '(' not closed")):
        read_sst(path)
    with pytest.raises(RnnkitError, match="classes=3; expected 5"):
        read_sst(path, classes=3)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(RnnkitError, match="empty"):
        read_sst(tmp_path / "empty.txt")


@pytest.mark.skipif(not SST.is_dir(), reason="needs ../shared/data/sst")
@pytest.mark.parametrize(
    ("split", "labels", "binary"),
    [
        ("train", [1092, 2218, 1624, 2322, 1288], 6920),
        ("dev", [139, 289, 229, 279, 165], 872),
        ("test", [279, 633, 389, 510, 399], 1821),
    ],
)
def test_real_sst_counts(split, labels, binary):
    sentences = read_sst(SST / f"{split}.txt")
    assert len(sentences) == sum(labels)
    assert [Counter(label for _, label in sentences)[k] for k in range(5)] == labels
    two = read_sst(SST / f"{split}.txt", classes=2)
    assert len(two) == binary
    assert Counter(label for _, label in two) == {0: labels[0] + labels[1], 1: labels[3] + labels[4]}


@pytest.mark.skipif(not SST.is_dir(), reason="needs ../shared/data/sst")
def test_real_sst_trees_are_binary():
    sentences = read_sst(SST / "dev.txt")
    with_phrases = read_sst(SST / "dev.txt", phrases=True)
    assert len(with_phrases) == sum(2 * len(words) - 1 for words, _ in sentences) == 41447
