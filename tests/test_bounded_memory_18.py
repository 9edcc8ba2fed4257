"""Bounded memory for any input (issue 18, item 2).

Before: ``rnnkit score RUN line50m.txt`` (one 50 MB line) peaked at 8.5 GB and then asked
torch for 209 GB (a line was scored in one piece); ``predict`` of a classifier peaked at
12.8 GB on it; a line that never ends on standard input grew until ``MemoryError`` in the
line reader; a 1M-type vocabulary built from one line ran to 7.9 GB. Now lines are read in
pieces (:mod:`rnnkit.data.lines`), a long line is scored in windows carrying the state (the
same figures as in one piece: tested here exactly, on small windows, for word, character
and BPE models), and the real console script is run under an address-space limit on a line
that goes on for as long as it reads.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit import inference
from rnnkit.cli import commands
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.data import corpora
from rnnkit.data.conll import Sentence
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.lines import read_pieces, split_text
from rnnkit.data.text import Codec
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError
from rnnkit.inference import LineScore, score_lines
from rnnkit.models.config import build_model
from rnnkit.tasks import lm
from rnnkit.tasks.lm import evaluate_file, evaluate_lm
from rnnkit.tasks.tagging import MAX_WORD_CHARS

RNNKIT = Path(sys.executable).with_name("rnnkit")
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]
ADDRESS_SPACE = 3 << 29  # 1.5 GiB: torch and a tiny model need about 0.8 GiB of it
PEAK_RSS_MB = 600  # what the runs below reach now: about 300 MB


# -- the line reader ---------------------------------------------------------------------------

ALPHABET = ["a", "bc", "word", " ", "  ", "\t", "\n", "\r\n", "é", "😀", "日本"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=60).map("".join), st.integers(8, 16))
def test_pieces_give_back_the_stream_and_hold_at_most_the_limit(text, limit):
    data = text.encode()
    pieces = list(read_pieces(io.BytesIO(data), "t", limit))
    assert b"".join(p.text.encode() + (p.end or "").encode() for p in pieces) == data
    for p in pieces:
        assert p.size <= limit and data[p.offset : p.offset + p.size] == p.text.encode()
    lines = [p for p in pieces if p.last]
    assert [p.number for p in lines] == list(range(1, len(lines) + 1))
    for p in pieces:  # read again from any piece: the same pieces (evaluate's columns do this)
        again = io.BytesIO(data)
        again.seek(p.offset)
        rest = list(read_pieces(again, "t", limit, p.offset, p.first))
        assert [(q.text, q.offset, q.end) for q in rest] == [
            (q.text, q.offset, q.end) for q in pieces[pieces.index(p) :]
        ]


def test_a_long_line_is_cut_before_a_word_and_never_inside_a_character():
    pieces = list(read_pieces(io.BytesIO(b"abc defgh ijk\n"), "t", 8))
    assert [(p.text, p.first, p.end) for p in pieces] == [
        ("abc", True, None),
        (" defgh", False, None),
        (" ijk", False, "\n"),
    ]
    word = "é" * 20  # 40 bytes, no space: cut at a character boundary
    pieces = list(read_pieces(io.BytesIO(word.encode()), "t", 9))
    assert "".join(p.text for p in pieces) == word and all(p.size <= 9 for p in pieces)
    assert list(split_text("aaa bbb ccc ddd eee", 8)) == ["aaa", " bbb", " ccc", " ddd eee"]


def test_a_bad_byte_far_into_a_long_line_names_its_line_and_offset():
    data = b"ok\n" + b"abcd " * 10 + b"\xff more\n"
    with pytest.raises(RnnkitError, match=r"^t: line 2, byte offset 53: not UTF-8 \(byte 0xff\)$"):
        list(read_pieces(io.BytesIO(data), "t", 16))


# -- a long line scored in windows is scored as the line in one piece ----------------------------


def _language_model(level: str, text: str) -> tuple[torch.nn.Module, Vocab, Codec]:
    """A random (untrained) float64 model over ``text``'s vocabulary: exactness needs no training."""
    if level == "bpe":
        codec = Codec.train_bpe(text.splitlines(keepends=True), 300)
        vocab = Vocab(sorted(codec.tokenizer.get_vocab(), key=codec.tokenizer.token_to_id), unk=None)
    else:
        codec = Codec(level)
        specials = (UNK,) if level == "char" else (UNK, EOS)
        vocab = Vocab.build(codec.corpus_tokens(text), specials=specials)
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="lstm", embed_size=8, hidden_size=8, num_layers=2), len(vocab))
    return model.double().eval(), vocab, codec


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
def test_a_long_line_in_windows_and_pieces_scores_as_in_one_piece(level, monkeypatch):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "über"]
    corpus = "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(40)) + "\n"
    model, vocab, codec = _language_model(level, corpus)
    line = " ".join(rng.choice([*words, "zebra", "Quux"]) for _ in range(150))  # with unknown words
    whole = score_lines(model, vocab, codec, [line], window=10**9)[0]
    assert whole["token_count"] > 40

    scorer = LineScore(model, vocab, codec, window=3)  # the CLI's way: pieces of 16 bytes
    for piece in read_pieces(io.BytesIO(line.encode() + b"\n"), "t", 16):
        scorer.add(codec.piece_tokens(piece.text, piece.end))
    monkeypatch.setattr(inference, "LINE_LIMIT", 16)  # the API's way: the string in pieces
    for parts in (scorer.result(), score_lines(model, vocab, codec, [line], window=5)[0]):
        assert parts["logprob"] == pytest.approx(whole["logprob"], rel=1e-12)
        assert parts["surprisal_bits"] == pytest.approx(whole["surprisal_bits"], rel=1e-10)
        assert parts["ppl"] == pytest.approx(whole["ppl"], rel=1e-12)
        for key in ("tokens", "token_count", "oov", "unknown"):
            assert parts[key] == whole[key], key
    if level == "word":
        assert whole["unknown"] == ["zebra", "Quux"] or whole["unknown"] == ["Quux", "zebra"]


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
def test_evaluate_reads_a_long_line_in_pieces_with_the_figures_of_the_whole(level, tmp_path, monkeypatch):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "über", "zebra"]
    (tmp_path / "train.txt").write_text(
        "\n".join(" ".join(rng.choice(words[:5]) for _ in range(6)) for _ in range(30))
    )
    long = " ".join(rng.choice(words) for _ in range(200))
    (tmp_path / "test.txt").write_text(
        f"the cat\n{long}\n\n{long[:300]}", encoding="utf-8"
    )  # no last newline
    corpus = load_corpus(locate(tmp_path), level=level, max_size=300 if level == "bpe" else None)
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_size=8, hidden_size=8, cell="gru"), len(corpus.vocab)).double()
    device = torch.device("cpu")
    expected = evaluate_lm(model, corpus.test, 3, 5, device)
    monkeypatch.setattr(lm, "EVAL_PIECE", 16)  # every long line in many pieces
    streamed = evaluate_file(model, tmp_path / "test.txt", corpus.codec, corpus.vocab, 3, 5, device)
    assert streamed["tokens"] == expected["tokens"]
    assert streamed["loss"] == pytest.approx(expected["loss"], rel=1e-12)


def test_per_token_figures_and_unknown_words_are_bounded_and_say_so(monkeypatch):
    text = "a b c\n" * 20
    model, vocab, codec = _language_model("word", text)
    monkeypatch.setattr(inference, "LISTED_TOKENS", 10)
    monkeypatch.setattr(inference, "LISTED_UNKNOWN", 3)
    line = " ".join(["a", "x1", "x2", "x1", "x3", "x4", "b"] * 3)
    result = score_lines(model, vocab, codec, [line])[0]
    assert "tokens" not in result and "surprisal_bits" not in result and result["per_token_left_out"]
    assert result["token_count"] == 22 and result["oov"] == 15  # counts stay exact
    assert result["unknown"] == ["x1", "x2", "x3"] and result["unknown_left_out"]
    assert "per_token_left_out" not in score_lines(model, vocab, codec, ["a b"])[0]


# -- the console script under a memory limit ------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny word language model, tagger and classifier."""
    root = tmp_path_factory.mktemp("runs")
    write_toy_lm_corpus(root)
    assert main(["train", "--data", str(root), "--out", str(root / "lm"), *TINY]) == 0
    treebank = write_toy_treebank(root / "treebank")
    chars = ["--model.char_embed=4", "--model.char_hidden=4"]  # the character feature reads every word
    assert (
        main(["train", "--data", str(treebank), "--out", str(root / "tag"), "--task=tag", *chars, *TINY]) == 0
    )
    sst = root / "sst"
    sst.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 40), ("dev", 10), ("test", 10)):
        label = [rng.choice([0, 4]) for _ in range(n)]
        trees = [f"({y} (2 the) ({y} (2 film) ({y} {'good' if y else 'bad'})))" for y in label]
        (sst / f"{split}.txt").write_text("\n".join(trees) + "\n")
    args = ["train", "--data", str(sst), "--out", str(root / "cls"), "--task=classify", "--data.classes=2"]
    assert main([*args, *TINY]) == 0
    return root


def _endless_line(args: list[str], out: Path, seconds: float, chunk: bytes) -> tuple[int, int, int]:
    """Run ``rnnkit ARGS -`` under :data:`ADDRESS_SPACE`, feeding standard input one line that
    goes on for ``seconds`` once the command reads (as fast as it reads: a reader that holds
    whole lines gets hundreds of MB), then ends without a newline.

    Returns (exit status, peak RSS in MB, bytes written); standard output goes to ``out``.
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    command = [str(RNNKIT)] if RNNKIT.exists() else [sys.executable, "-m", "rnnkit"]
    with out.open("wb") as stdout, (out.parent / "stderr.txt").open("wb") as stderr:
        proc = subprocess.Popen(
            [*command, *args, "-"],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            preexec_fn=limit,
        )
        written = 0

        def feed() -> None:
            nonlocal written
            end = None  # the clock starts once the command reads (a pipe holds 64 KiB unread)
            try:
                while end is None or time.monotonic() < end:
                    proc.stdin.write(chunk)
                    written += len(chunk)
                    if end is None and written > 1 << 20:
                        end = time.monotonic() + seconds
                proc.stdin.close()
            except (BrokenPipeError, OSError):  # it died, as it did before: the status says so
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        peak = 0  # VmHWM, read while it runs: ru_maxrss after fork counts this process's pages
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:")[1].split()[0]) // 1024)
            except (OSError, IndexError, ValueError):  # it has just exited
                pass
            time.sleep(0.05)
        writer.join(5)
    return proc.returncode, peak, written


def test_score_reads_a_line_that_never_ends_in_bounded_memory(runs, tmp_path):
    status, peak, written = _endless_line(
        ["score", str(runs / "lm")], tmp_path / "out", 2, b"w1 w2 w3 " * 4096
    )
    stderr = (tmp_path / "stderr.txt").read_text()
    assert status == 0, stderr
    assert peak < PEAK_RSS_MB, f"peak RSS {peak} MB"
    line, total = (tmp_path / "out").read_text().splitlines()
    assert line.startswith("1\tlogprob ") and line.endswith(f" … ({written} bytes)")
    assert len(line) < commands.ECHO_CHARS + 100  # a prefix of the line, not the line
    assert total.startswith("all ") and "Traceback" not in stderr


@pytest.mark.parametrize("run", ["tag", "cls"])
def test_predict_reads_a_line_that_never_ends_in_bounded_memory(runs, tmp_path, run):
    words = b"the cat sat on the mat " * 2048
    status, peak, _ = _endless_line(["predict", str(runs / run)], tmp_path / "out", 1, words)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert status == 0, stderr
    assert peak < PEAK_RSS_MB, f"peak RSS {peak} MB"
    assert "line 1 has more words than --max-words 1000" in stderr or "more than --max-words 1000" in stderr
    assert "Traceback" not in stderr
    out = (tmp_path / "out").read_text()
    if run == "cls":  # one line of output, its words cut to 1000 and the rest counted
        ((label, name, _, text),) = [line.split("\t") for line in out.splitlines()]
        assert label in ("0", "1") and name in ("negative", "positive")
        assert len(text.split(" … ")[0].split()) == 1000 and text.endswith(" words)")
    else:  # every word tagged, the line's one sentence ending in one blank line
        rows = out.split("\n\n")[0].splitlines()
        assert len(rows) > 1000 and all(len(r.split("\t")) == 2 for r in rows)


def test_score_in_pieces_through_the_cli_gives_the_figures_of_one_piece(runs, tmp_path, monkeypatch, capsys):
    line = " ".join(random.Random(1).choice(["w1", "w2", "w3", "zz"]) for _ in range(300))
    (tmp_path / "long.txt").write_text(f"w1 w2\n{line}\nw3\n")
    assert main(["score", str(runs / "lm"), str(tmp_path / "long.txt"), "--json"]) == 0
    whole = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    monkeypatch.setattr(commands, "LINE_LIMIT", 32)
    monkeypatch.setattr(inference, "SCORE_WINDOW", 7)
    assert main(["score", str(runs / "lm"), str(tmp_path / "long.txt"), "--json"]) == 0
    pieces = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    assert [p["line"] for p in pieces] == [1, 2, 3]
    for a, b in zip(whole, pieces):
        assert b["logprob"] == pytest.approx(a["logprob"], rel=1e-5)
        assert (b["tokens"], b["oov"], b["unknown"]) == (a["tokens"], a["oov"], a["unknown"])
    assert main(["score", str(runs / "lm"), str(tmp_path / "long.txt")]) == 0
    second = capsys.readouterr().out.splitlines()[1]
    assert second.endswith(f" … ({len(line)} bytes)")


def test_predict_tags_a_long_sentence_in_parts_and_says_so(runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("the cat sat on the mat .\nthe dog\n")
    monkeypatch.setattr(commands, "TAG_MAX_WORDS", 3)
    assert main(["predict", str(runs / "tag"), str(tmp_path / "in.txt"), "--json"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(row) for row in out.splitlines()]
    assert [(r["line"], r.get("part"), len(r["words"])) for r in records] == [
        (1, 1, 3),
        (1, 2, 3),
        (1, 3, 1),
        (2, None, 2),
    ]
    assert err.strip().splitlines() == [
        f"rnnkit predict: warning: {tmp_path / 'in.txt'}: line 1 has more words than --max-words 3: "
        "tagged in parts of 3 words"
    ]
    assert main(["predict", str(runs / "tag"), str(tmp_path / "in.txt")]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert [len(b.splitlines()) for b in blocks[:2]] == [7, 2]  # a cut sentence is still one block


def test_the_character_feature_reads_the_two_ends_of_a_word_of_any_length(runs):
    tagger = rnnkit.load(runs / "tag")
    word = "a" * 700 + "b" * 5000 + "c" * 700
    _, _, chars, _ = tagger.task.tensors([Sentence([word, "the"])], with_tags=False)
    assert chars is not None and chars[0].shape[0] == MAX_WORD_CHARS == 1000
    spelled = "".join(tagger.task.corpus.chars.tokens[int(i)] for i in chars[0][:, chars[2][0, 0]])
    assert spelled == "a" * 500 + "c" * 500  # its first and last 500 characters
    assert len(tagger.tag([[word, "the"]])[0]) == 2


def test_a_classifier_reads_the_first_words_of_a_long_sentence_and_says_so(
    runs, tmp_path, monkeypatch, capsys
):
    (tmp_path / "in.txt").write_text("the film good good good\nthe film bad\n")
    monkeypatch.setattr(commands, "CLASSIFY_MAX_WORDS", 3)
    assert main(["predict", str(runs / "cls"), str(tmp_path / "in.txt"), "--json"]) == 0
    out, err = capsys.readouterr()
    first, second = (json.loads(row) for row in out.splitlines())
    assert first["text"] == "the film good" and first["words_left_out"] == 2
    assert second["text"] == "the film bad" and "words_left_out" not in second
    assert "line 1 has 5 words, more than --max-words 3: classified on its first 3 words" in err


# -- a vocabulary built from pathological text ----------------------------------------------------


def test_a_vocabulary_cut_by_its_size_is_one_warning_naming_what_was_cut(tmp_path, monkeypatch, capsys):
    (tmp_path / "one.txt").write_text(" ".join(f"t{i}" for i in range(1000)) + " a a a\n")
    monkeypatch.setattr(corpora, "MAX_SIZE", 102)  # the default when data.max_size is none
    corpus = load_corpus(locate(tmp_path / "one.txt", valid_fraction=0.1))
    assert len(corpus.vocab) == 102 and corpus.vocab.cut is not None
    (warning,) = capsys.readouterr().err.splitlines()
    # 903 training tokens (90% of 1004), all distinct: 100 kept besides <unk> and <eos>
    assert corpus.vocab.cut == (803, 803, 903)
    assert warning == (
        f"rnnkit: warning: {tmp_path / 'one.txt'}: the vocabulary is cut to data.max_size = 102 tokens: "
        "the rarest 803 types (88.93% of the 903 tokens) are left out, read as <unk>"
    )
    load_corpus(locate(tmp_path / "one.txt", valid_fraction=0.1), max_size=5000)
    assert capsys.readouterr().err == ""  # nothing cut, nothing said
    assert Vocab.build(["a", "b"], max_size=5).cut is None


# -- generate ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--num", "1000000000"], ["--num", "at most 10000"]), (["--max-tokens=10000000"], ["--max-tokens"])],
)
def test_generate_refuses_what_has_no_end(runs, args, words, capsys):
    assert main(["generate", str(runs / "lm"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and all(word in err for word in words), err
