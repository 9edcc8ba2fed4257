"""Text outputs never echo a control character raw (issue 18, item 5).

Before, ``rnnkit score`` echoed a line's NUL, ANSI escapes and TABs to standard output as
they were: a terminal obeyed the escapes, and a TAB added a field to the tab-separated
line. Every text output that echoes user text (score's line, predict's ``word TAB tag`` and
classifier lines, next's tokens, the out-of-vocabulary warning) now goes through
:func:`rnnkit.textsafe.printable`; JSON outputs were safe already (``json.dumps`` escapes
control characters) and stay so.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.textsafe import printable

RNNKIT = Path(sys.executable).with_name("rnnkit")
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
HOSTILE = "the \x1b[31mred\x1b[0m cat\tsat\x00 on \x7fthe\u2028mat \u202eevil"  # ESC, TAB, NUL, DEL, LS, RLO
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # all but \t \n


def rnnkit(*args: str | Path) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it (output as bytes decoded, nothing lost)."""
    command = [str(RNNKIT)] if RNNKIT.exists() else [sys.executable, "-m", "rnnkit"]
    proc = subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A word language model whose corpus (so its vocabulary) holds control characters, a
    tagger and a classifier."""
    root = tmp_path_factory.mktemp("runs")
    rng = random.Random(0)
    words = ["the", "cat", "sat", "a\x1b[2Jb", "c\x00d", "e\x9bf"]  # no whitespace inside (\x85 is)
    text = "\n".join(" ".join(rng.choice(words) for _ in range(6)) for _ in range(80)) + "\n"
    (root / "train.txt").write_text(text)
    (root / "valid.txt").write_text(text[:400] + "\n")
    assert main(["train", "--data", str(root), "--out", str(root / "lm"), *TINY]) == 0
    treebank = write_toy_treebank(root / "treebank")
    assert main(["train", "--data", str(treebank), "--out", str(root / "tag"), "--task=tag", *TINY]) == 0
    sst = root / "sst"
    sst.mkdir()
    for split in ("train", "dev", "test"):
        labels = [rng.choice([0, 4]) for _ in range(20)]
        trees = [f"({y} (2 the) ({y} (2 film) ({y} {'good' if y else 'bad'})))" for y in labels]
        (sst / f"{split}.txt").write_text("\n".join(trees) + "\n")
    args = ["train", "--data", str(sst), "--out", str(root / "cls"), "--task=classify", "--data.classes=2"]
    assert main([*args, *TINY]) == 0
    (root / "hostile.txt").write_text(HOSTILE + "\nthe cat\n", encoding="utf-8")
    return root


def test_score_escapes_the_line_it_echoes_and_keeps_five_fields(runs):
    proc = rnnkit("score", runs / "lm", runs / "hostile.txt")
    assert proc.returncode == 0, proc.stderr
    first, second, _total = proc.stdout.splitlines()
    assert first.split("\t")[4:] == [printable(HOSTILE)] and len(second.split("\t")) == 5
    assert not RAW.search(proc.stdout) and not RAW.search(proc.stderr)  # the warning's words too
    assert "\\x1b[31mred\\x1b[0m" in first and "cat\\tsat\\x00" in first and "\\u202eevil" in first
    assert "\\x1b[31mred\\x1b[0m" in proc.stderr  # an unknown word, named in the warning


def test_score_json_stays_parseable_and_free_of_raw_control_characters(runs, capsys):
    assert main(["score", str(runs / "lm"), str(runs / "hostile.txt"), "--json"]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out) and "\t" not in out
    first = json.loads(out.splitlines()[0])
    assert "\x1b[31mred\x1b[0m" in first["unknown"] and "sat\x00" in first["unknown"]


def test_next_escapes_tokens_its_vocabulary_holds(runs, capsys):
    assert main(["next", str(runs / "lm"), "the", "-k", "20"]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out)
    tokens = [row.split("\t")[1] for row in out.splitlines()]
    assert {"a\\x1b[2Jb", "c\\x00d", "e\\x9bf"} <= set(tokens)
    assert all(len(row.split("\t")) == 2 for row in out.splitlines())


def test_a_taggers_word_tab_tag_output_escapes_the_words(runs, capsys):
    proc = rnnkit("predict", runs / "tag", runs / "hostile.txt")
    assert proc.returncode == 0, proc.stderr
    assert not RAW.search(proc.stdout)
    rows = [row for row in proc.stdout.splitlines() if row]
    assert all(len(row.split("\t")) == 2 for row in rows)
    assert rows[1].split("\t")[0] == "\\x1b[31mred\\x1b[0m" and rows[5].split("\t")[0] == "\\x7fthe"
    assert main(["predict", str(runs / "tag"), str(runs / "hostile.txt"), "--json"]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out) and json.loads(out.splitlines()[0])["words"][1] == "\x1b[31mred\x1b[0m"


def test_a_classifiers_lines_escape_the_sentence_and_keep_four_fields(runs, capsys):
    assert main(["predict", str(runs / "cls"), str(runs / "hostile.txt")]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out)
    first, second = (row.split("\t") for row in out.splitlines())
    assert len(first) == len(second) == 4 and first[3] == printable(" ".join(HOSTILE.split()))
    assert main(["predict", str(runs / "cls"), str(runs / "hostile.txt"), "--json"]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out) and json.loads(out.splitlines()[0])["text"] == " ".join(HOSTILE.split())
