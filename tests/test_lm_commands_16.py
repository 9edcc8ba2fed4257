"""Issue 16 on the language-model verbs, through the real console script: score and evaluate
say what is out of the vocabulary, char models generate text, BPE runs speak text, any
readable input (``-``, ``/dev/null``) is read, and a single-file corpus points to its split."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_toy_lm_corpus
from rnnkit.cli.main import main
from rnnkit.tasks.lm import generate
from rnnkit.training.run import load

RNNKIT = Path(sys.executable).with_name("rnnkit")
TINY = ["--model.hidden_size=16", "--model.embed_size=16", "--no-progress"]
FAST = ["--train.optimizer=adam", "--train.lr=0.01", "--train.batch_size=4", "--train.bptt=16"]


def rnnkit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    command = [str(RNNKIT)] if RNNKIT.exists() else [sys.executable, "-m", "rnnkit"]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("words"))
    run = root / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--train.epochs=1", *TINY]) == 0
    return run


PASSAGE = "ROMEO:\nthe cat sat\non the mat\n\n"  # a newline inside the passage, a blank line after it


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chars")
    (root / "play.txt").write_text(PASSAGE * 60)
    run = root / "run"
    args = ["train", "--data", str(root / "play.txt"), "--out", str(run), "--data.level=char"]
    assert main([*args, "--train.epochs=3", *TINY, *FAST, "--train.lr=0.02"]) == 0
    return run


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    lines = [f"the {a} {v} on the {b} <unk> ." for a in ("cat", "dog") for v in ("sat", "ran") for b in "xy"]
    (root / "raw.txt").write_text("\n".join(lines * 20) + "\n")
    run = root / "run"
    args = ["train", "--data", str(root / "raw.txt"), "--out", str(run), "--data.level=bpe"]
    assert main([*args, "--data.max_size=300", "--train.epochs=2", *TINY, *FAST]) == 0
    return run


def test_score_shows_unk_where_it_was_read_and_counts_it(word_run, tmp_path, capsys):
    proc = rnnkit("score", word_run, "-", "--json", stdin="The w1 Stock\nw1 w2\n")
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["tokens"] == ["<unk>", "w1", "<unk>", "<eos>"]  # what the model read
    assert first["oov"] == 2 and first["unknown"] == ["The", "Stock"]
    assert second["oov"] == 0 and second["tokens"] == ["w1", "w2", "<eos>"]
    assert "warning: not in the vocabulary, read as <unk>: Stock The" in proc.stderr
    assert "2 lines, 7 tokens; 2 out of vocabulary (28.57%" in proc.stderr
    (tmp_path / "lines.txt").write_text("The w1 Stock\n")
    assert main(["score", str(word_run), str(tmp_path / "lines.txt")]) == 0
    line, total = capsys.readouterr().out.splitlines()
    assert line.split("\t")[3] == "oov 2" and line.endswith("\tThe w1 Stock")
    assert total.startswith("all 4 tokens: ppl ") and "2 out of vocabulary (50.00%" in total


def test_score_reads_any_readable_file_and_an_empty_one_is_a_note(word_run, monkeypatch, capsys):
    proc = rnnkit("score", word_run, "/dev/null")
    assert proc.returncode == 0 and proc.stdout == ""
    assert "/dev/null is empty: no lines to score" in proc.stderr and "0 lines" in proc.stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["score", str(word_run), "-", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "standard input is empty" in captured.err
    assert main(["score", str(word_run), str(word_run / "missing.txt")]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err


def test_evaluate_reports_the_out_of_vocabulary_rate(word_run, tmp_path, capsys):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("w1 w2 w3 zzz\nw4 w5 yyy w6\n" * 10)
    proc = rnnkit("evaluate", word_run, "--data", tmp_path, "--json")
    figures = json.loads(proc.stdout)
    assert figures["oov"] == 20 and figures["oov_rate"] == pytest.approx(20 / 100)
    assert main(["evaluate", str(word_run), "--data", str(tmp_path)]) == 0
    assert "20 out of vocabulary (20.00%), scored as <unk>" in capsys.readouterr().out


def test_a_single_file_corpus_suggests_the_valid_split(tmp_path, capsys):
    (tmp_path / "all.txt").write_text("a b c d\nb c d a\n" * 50)
    run = tmp_path / "run"
    assert (
        main(["train", "--data", str(tmp_path / "all.txt"), "--out", str(run), "--train.epochs=1", *TINY])
        == 0
    )
    proc = rnnkit("evaluate", run)
    assert proc.returncode == 2 and "no test split; try --split valid" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    summary = json.loads((run / "summary.json").read_text())
    assert figures["loss"] == pytest.approx(summary["best_valid"]["loss"], rel=1e-6)  # the same tokens


def test_a_character_model_generates_past_the_end_of_a_line(char_run, capsys):
    """Tiny Shakespeare breaks lines inside a speech: a newline is no end; a blank line is."""
    model, vocab, _, codec = load(char_run)
    greedy = codec.join(generate(model, vocab, codec, "ROMEO:", max_tokens=200, top_k=1))
    assert greedy == "\nthe cat sat\non the mat"  # the whole passage, up to its blank line
    proc = rnnkit("generate", char_run, "--prompt", "ROMEO:", "--top-k", "1")
    assert proc.stdout == "ROMEO:" + greedy + "\n"
    assert main(["generate", str(char_run), "--prompt", "ROMEO:", "--max-tokens", "8", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["text"]) == 8  # cut at --max-tokens
    assert main(["next", str(char_run), "ROMEO:", "-k", "1"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == '"\\n"\n'  # a newline, shown as one


def test_bpe_runs_show_text_and_report_per_word_and_per_byte(bpe_run, monkeypatch, capsys):
    codec = load(bpe_run).codec
    assert codec.corpus_tokens("on the x <unk> .\n")[-4:-2] == ["Ġ", "<unk>"]  # one token, not pieces
    proc = rnnkit("next", bpe_run, "the cat sat on the", "-k", "3")
    assert proc.returncode == 0 and "Ġ" not in proc.stdout
    assert all(line.split("\t")[1].startswith('"') for line in proc.stdout.splitlines())
    assert main(["next", str(bpe_run), "the cat sat on the", "-k", "3", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert all(row["text"] == codec.token_text(row["token"]) for row in top)
    assert any(row["token"].startswith("Ġ") and row["text"].startswith(" ") for row in top)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"the dog ran\n")))
    assert main(["score", str(bpe_run), "-", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert "".join(scored["decoded"]) == "the dog ran\n" and scored["tokens"][1] == "Ġdog"
    assert main(["evaluate", str(bpe_run), "--split", "valid", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["unit"] == "subword" and "oov" not in figures  # BPE reads any text
    valid = (bpe_run.parent / "raw.txt").read_text()
    valid = valid[int(len(valid) * 0.9) :]
    text_tokens = len(codec.corpus_tokens(valid))
    assert figures["words"] == sum(len(line.split()) + 1 for line in valid.splitlines())
    assert figures["bytes"] == len(valid.encode())
    nll = figures["loss"] * text_tokens
    assert figures["word_ppl"] == pytest.approx(math.exp(nll / figures["words"]))
    assert figures["bits_per_byte"] == pytest.approx(nll / math.log(2) / figures["bytes"])
    assert main(["evaluate", str(bpe_run), "--split", "valid"]) == 0
    text = capsys.readouterr().out
    assert "per subword" in text and "per word ppl" in text and "bits per byte" in text
