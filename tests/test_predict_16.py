"""Issue 16 on ``rnnkit predict`` with taggers, through the real console script: the format
comes from the file's content, -DOCSTART- lines stay, --json gives JSON lines, ``-`` reads
standard input and an empty input is a note."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_treebank
from rnnkit.cli.main import main

RNNKIT = Path(sys.executable).with_name("rnnkit")
SMALL = ["--model.hidden_size=16", "--model.embed_size=16", "--train.optimizer=adam", "--train.lr=0.01"]
SMALL += ["--train.batch_size=16", "--model.bidirectional=true", "--no-progress", "--task=tag"]


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    command = [str(RNNKIT)] if RNNKIT.exists() else [sys.executable, "-m", "rnnkit"]
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def pos_run(tmp_path_factory):
    root = write_toy_treebank(tmp_path_factory.mktemp("ud") / "treebank")
    run = root.parent / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--train.epochs=1", *SMALL]) == 0
    return run


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    rng = random.Random(1)

    def sentence() -> str:
        name = rng.choice(["John", "Mary"])
        return f"{name} NNP I-NP I-PER\nvisited VBD I-VP O\nit PRP I-NP O\n\n"

    for split in ("eng.train", "eng.testa", "eng.testb"):
        docs = ["-DOCSTART- -X- O O\n\n" + "".join(sentence() for _ in range(4)) for _ in range(5)]
        (root / split).write_text("".join(docs))
    run = root / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--train.epochs=1", *SMALL]) == 0
    return run


def gum_like(treebank: Path) -> str:
    """The toy test file as GUM writes it: a document comment, sentence ids and texts."""
    blocks = (treebank / "t-ud-test.conllu").read_text().strip("\n").split("\n\n")
    return "# newdoc id = doc1\n" + "".join(
        f"# sent_id = {i}\n# text = {' '.join(r.split(chr(9))[1] for r in b.splitlines())}\n{b}\n\n"
        for i, b in enumerate(blocks, 1)
    )


def test_conllu_not_named_conllu_is_read_as_conllu_and_the_name_is_questioned(pos_run, tmp_path):
    text = gum_like(pos_run.parent / "treebank")
    (tmp_path / "gum-test.txt").write_text(text)
    proc = rnnkit("predict", pos_run, tmp_path / "gum-test.txt")
    assert proc.returncode == 0, proc.stderr
    out, given = proc.stdout.splitlines(), text.splitlines()
    assert len(out) == len(given)  # CoNLL-U back, line for line: no "#\tX", "newdoc\tNOUN"
    for o, g in zip(out, given):
        if g.startswith("#") or not g:
            assert o == g
        else:
            assert o.split("\t")[:3] == g.split("\t")[:3] and o.split("\t")[4:] == g.split("\t")[4:]
    assert "read as CoNLL-U although its name suggests plain text" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_conll2003_keeps_its_docstart_lines(ner_run):
    testb = ner_run.parent / "eng.testb"
    proc = rnnkit("predict", ner_run, testb)
    assert proc.returncode == 0 and proc.stderr == ""
    out, given = proc.stdout.splitlines(), testb.read_text().splitlines()
    assert len(out) == len(given)  # line for line, as conlleval expects
    for o, g in zip(out, given):
        assert o.rsplit(" ", 1)[0] == g if g else o == ""
    assert out[0] == "-DOCSTART- -X- O O O" and out.count(out[0]) == 5


def test_taggers_write_json_lines_and_read_standard_input(pos_run, tmp_path, monkeypatch, capsys):
    text = gum_like(pos_run.parent / "treebank")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["predict", str(pos_run), "-", "--json"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(rows) == len(blocks) and captured.err == ""  # a name that says nothing: no warning
    for row, block in zip(rows, blocks):
        words = [line.split("\t")[1] for line in block.splitlines() if not line.startswith("#")]
        assert row["words"] == words and len(row["tags"]) == len(words)
        assert set(row["tags"]) <= {"DET", "NOUN", "VERB", "ADP", "PUNCT"}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"the cat sat\n")))
    assert main(["predict", str(pos_run), "-"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.split()[::2]] == ["the", "cat", "sat"]
    out = tmp_path / "tagged.txt"
    assert main(["predict", str(pos_run), "/dev/null", "--out", str(out)]) == 0
    assert "/dev/null is empty: nothing to predict" in capsys.readouterr().err
    assert out.read_text() == ""
