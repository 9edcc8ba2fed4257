"""Evaluation: the state carried through the stream, batch size only splitting it, streamed."""

from __future__ import annotations

import tracemalloc

import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.models.config import build_model
from rnnkit.tasks.lm import describe, evaluate_file, evaluate_lm

LINES = [
    "the cat sat on the mat .",
    "a dog ran  past\tthe  cat",
    "",
    "ünïcödé words too , and a rare zebra",
]


@pytest.fixture
def corpus_dir(tmp_path):
    g = torch.Generator().manual_seed(0)
    rows = [LINES[int(i)] for i in torch.randint(len(LINES), (60,), generator=g)]
    (tmp_path / "train.txt").write_text("\n".join(rows[:40]) + "\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("\n".join(rows[40:]) + "\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("\n".join(rows[40:]) + "\nno newline at the end", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_streamed_equals_in_memory(corpus_dir, level, batch_size):
    corpus = load_corpus(locate(corpus_dir), level=level, max_size=300 if level == "bpe" else None)
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_size=8, hidden_size=8, cell="gru"), len(corpus.vocab)).double()
    device = torch.device("cpu")
    expected = evaluate_lm(model, corpus.test, batch_size, 5, device)
    path = corpus_dir / "test.txt"
    streamed = evaluate_file(model, path, corpus.codec, corpus.vocab, batch_size, 5, device)
    assert streamed["tokens"] == expected["tokens"]
    assert streamed["loss"] == pytest.approx(expected["loss"], rel=1e-12)


def test_streaming_memory_does_not_grow_with_the_file(tmp_path):
    corpus_path = tmp_path / "c"
    corpus_path.mkdir()
    (corpus_path / "train.txt").write_text("a b c d\nb c d a\n")
    corpus = load_corpus(locate(corpus_path / "train.txt", valid_fraction=0.5))
    model = build_model(ModelConfig(embed_size=4, hidden_size=4), len(corpus.vocab))
    peaks = []
    for lines in (2_000, 20_000):
        path = tmp_path / f"big{lines}.txt"
        path.write_text("a b c d a b c d a b\n" * lines)
        tracemalloc.start()
        evaluate_file(model, path, corpus.codec, corpus.vocab, 4, 50, torch.device("cpu"))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # Ten times the text (220k tokens; in memory its ids alone would be ~8 MB of ints):
    # the peak stays what it was, well under the size of the file.
    assert peaks[1] < 1.5 * peaks[0] + 100_000, peaks
    assert peaks[1] < (tmp_path / "big20000.txt").stat().st_size


def test_units_by_level():
    figures = {"loss": 1.0, "ppl": 2.718, "bits": 1.4427, "tokens": 10}
    assert describe("valid", figures, "char").startswith("valid: 1.4427 bits per character")
    assert describe("test", figures, "symbol").startswith("test: 1.4427 bits per symbol")
    assert describe("test", figures, "word").startswith("test: ppl 2.72 per word")


def test_result_depends_on_batch_size_only_through_the_stream_split():
    """Batch N = N contiguous columns (batchify), each one long sequence: the loss equals the
    token-weighted mean of evaluating each column alone, and bptt changes nothing."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_size=6, hidden_size=6, cell="lstm"), 20).double()
    stream = torch.randint(20, (203,))
    device = torch.device("cpu")
    for N in (1, 4, 7):
        T = stream.numel() // N
        expected_nll, tokens = 0.0, 0
        for j in range(N):  # each column by itself, in a single window
            alone = evaluate_lm(model, stream[j * T : (j + 1) * T], 1, 10_000, device)
            expected_nll += alone["loss"] * alone["tokens"]
            tokens += alone["tokens"]
        for bptt in (1, 5, 64):
            figures = evaluate_lm(model, stream, N, bptt, device)
            assert figures["tokens"] == tokens == N * (T - 1)
            assert figures["loss"] == pytest.approx(expected_nll / tokens, rel=1e-12)
