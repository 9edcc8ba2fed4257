"""Stanford Sentiment Treebank: labelled PTB-style trees into (words, label) examples.

Each line of the SST files (Socher et al. 2013, ``trainDevTestTrees_PTB``) is one
sentence as a binary parse tree whose every node carries a sentiment label 0-4 (very
negative .. very positive), e.g. ``(3 (2 It) (4 (2 's) (3 great)))``. The root's label is
the sentence's label.
"""

from __future__ import annotations

import os
import re

from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_text

LABELS = ("0", "1", "2", "3", "4")
CLASS_NAMES = {
    2: ("negative", "positive"),
    5: ("very negative", "negative", "neutral", "positive", "very positive"),
}
# Split on ASCII whitespace only: a word may hold a no-break space (the film "8\xa01\\/2" in train.txt).
_TOKEN = re.compile(r"\(|\)|[^\s()]+", re.ASCII)
_TREE_LINE = re.compile(r"\(\s*[0-4]\s.*\)", re.ASCII | re.DOTALL)  # "(3 ... )": how a tree opens and ends
SNIFF_LINES = 200
"""How many lines (not blank) ``read_sentences(fmt="auto")`` weighs to tell trees from text."""


def parse_tree(line: str, where: str | None = None) -> tuple[list[str], int, list[tuple[int, int, int]]]:
    """Parse one tree ``(label word)`` / ``(label subtree subtree ...)``.

    Args:
        line: the tree's text.
        where: prefix for error messages, e.g. ``"dev.txt: line 7"``.

    Returns:
        ``(words, root_label, phrases)``: the leaves in order, the root's label, and one
        ``(start, end, label)`` per node in pre-order (the root first), covering
        ``words[start:end]``.

    Raises:
        RnnkitError: unbalanced parentheses, a missing or non-0-4 label, an empty node, a
            node holding both a word and subtrees, or text outside the tree (naming
            ``where`` and the character column).
    """

    def fail(column: int, problem: str) -> RnnkitError:
        return RnnkitError(f"{where + ': ' if where else ''}column {column}: {problem}")

    words: list[str] = []
    phrases: list[list[int]] = []
    open_nodes: list[list[int]] = []  # [phrase index, holds a word, holds subtrees]
    tokens = _TOKEN.finditer(line)
    for match in tokens:
        token, column = match[0], match.start() + 1
        if phrases and not open_nodes and token != ")":
            raise fail(column, f"{token!r} after the tree's last ')'; expected the end of the line")
        if token == "(":
            label = next(tokens, None)
            if label is None or label[0] in ("(", ")"):
                raise fail(column, "missing label after '('; expected 0-4")
            if label[0] not in LABELS:
                raise fail(label.start() + 1, f"label {label[0]!r}; expected 0-4")
            if open_nodes:
                if open_nodes[-1][1]:
                    raise fail(column, "a subtree after a word; a node holds one word or subtrees")
                open_nodes[-1][2] = 1
            open_nodes.append([len(phrases), 0, 0])
            phrases.append([len(words), -1, int(label[0])])
        elif token == ")":
            if not open_nodes:
                raise fail(column, "')' with no open '('; unbalanced parentheses")
            index, has_word, has_subtrees = open_nodes.pop()
            if not (has_word or has_subtrees):
                raise fail(column, "an empty node; expected a word or subtrees before ')'")
            phrases[index][1] = len(words)
        else:
            if not open_nodes:
                raise fail(column, f"word {token!r} outside the tree; expected '('")
            if open_nodes[-1][1] or open_nodes[-1][2]:
                raise fail(column, f"a second word or a word after a subtree ({token!r}); expected ')'")
            open_nodes[-1][1] = 1
            words.append(token)
    if open_nodes:
        raise fail(len(line) + 1, f"{len(open_nodes)} '(' not closed; unbalanced parentheses")
    if not phrases:
        raise fail(1, "no tree; expected '(label ...)'")
    return words, phrases[0][2], [(start, end, label) for start, end, label in phrases]


def read_sst(path: str | os.PathLike, classes: int = 5, phrases: bool = False) -> list[tuple[list[str], int]]:
    """The (words, label) examples of an SST tree file, one tree a line.

    Args:
        classes: 5 keeps the labels 0-4; 2 maps 0-1 to 0 and 3-4 to 1 and drops the
            neutral 2 (SST-2).
        phrases: also yield every phrase (every node below the root, leaves included) as
            its own example, after its sentence, under the same label mapping. This is
            for training only: evaluation, as in the literature, uses whole sentences
            (``phrases=False``).

    Raises:
        RnnkitError: ``classes`` is not 5 or 2, or a tree is malformed (naming the file,
            line and column).
    """
    if classes not in (5, 2):
        raise RnnkitError(f"classes={classes!r}; expected 5 (labels 0-4) or 2 (negative/positive)")
    text = read_text(path, "SST tree file")
    examples: list[tuple[list[str], int]] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        words, _, spans = parse_tree(line, f"{path}: line {number}")
        for start, end, label in spans if phrases else spans[:1]:
            if classes == 2:
                if label == 2:
                    continue
                label = int(label > 2)
            examples.append((words[start:end], label))
    return examples


def read_sentences(path: str | os.PathLike, fmt: str = "auto", text: str | None = None) -> list[list[str]]:
    """The sentences of a file to classify, one a line (blank lines skipped).

    ``fmt`` ``sst``: SST trees, their words (gold labels ignored, no line dropped);
    ``text``: whitespace-tokenised text; ``auto``: trees when the first line, or half of the
    first :data:`SNIFF_LINES` lines, look like one (``(label ... )``): a malformed tree is then
    an error naming its line, and a sentence that merely opens with ``(`` stays text.
    ``text``: the file's text when it is already read (standard input); ``path`` then only
    names it in messages.
    """
    if text is None:
        text = read_text(path, "file of sentences")
    elif not text.strip():
        raise RnnkitError(f"{path}: the file of sentences is empty")
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if fmt == "auto":
        first = [bool(_TREE_LINE.fullmatch(line.strip())) for _, line in lines[:SNIFF_LINES]]
        fmt = "sst" if first and (first[0] or 2 * sum(first) >= len(first)) else "text"
    if fmt == "sst":
        return [parse_tree(line, f"{path}: line {n}")[0] for n, line in lines]
    return [line.split() for _, line in lines]
