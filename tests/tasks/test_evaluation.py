"""Evaluation: the state carried through the stream, batch size only splitting it, streamed."""

from __future__ import annotations

import math
import tracemalloc

import pytest
import torch

from rnnkit.config import ModelConfig
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.models.config import build_model
from rnnkit.tasks.lm import describe, evaluate_file, evaluate_lm, evaluate_tokens, heldout_tokens

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


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
def test_a_split_off_validation_part_is_the_one_training_used(tmp_path, level):
    """evaluate on a single-file corpus reads the tokens training validated on, and gives the
    figures of that text streamed from a file of its own."""
    g = torch.Generator().manual_seed(1)
    rows = [LINES[int(i)] for i in torch.randint(len(LINES), (80,), generator=g)]
    (tmp_path / "all.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    files = locate(tmp_path / "all.txt", valid_fraction=0.2)
    corpus = load_corpus(files, level=level, max_size=300 if level == "bpe" else None)
    tokens = heldout_tokens(files.train, 0.2, corpus.codec)
    assert torch.equal(corpus.vocab.encode(tokens), corpus.valid)
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_size=8, hidden_size=8), len(corpus.vocab)).double()
    cpu = torch.device("cpu")
    figures = evaluate_tokens(model, tokens, corpus.codec, corpus.vocab, 3, 5, cpu)
    (tmp_path / "valid.txt").write_text(corpus.codec.join(tokens), encoding="utf-8")
    if level != "word":  # a word stream joined back loses its line breaks to <eos> tokens
        streamed = evaluate_file(model, tmp_path / "valid.txt", corpus.codec, corpus.vocab, 3, 5, cpu)
        assert streamed == pytest.approx(figures, rel=1e-9)
    assert figures["loss"] == pytest.approx(evaluate_lm(model, corpus.valid, 3, 5, cpu)["loss"])
    if level == "word":
        assert "word_ppl" not in figures and figures["oov"] == 0
    else:  # per word and per byte: the text's NLL over its words (line ends too) and bytes
        text = corpus.codec.join(tokens)
        assert figures["words"] == sum(len(line.split()) + 1 for line in text.splitlines())
        assert figures["bytes"] == len(text.encode("utf-8")) > len(text)  # ü, é: two bytes each
        nll = figures["loss"] * len(tokens)
        assert figures["word_ppl"] == pytest.approx(math.exp(nll / figures["words"]))
        assert figures["bits_per_byte"] == pytest.approx(nll / math.log(2) / figures["bytes"])
    assert ("oov" in figures) == (level != "bpe")  # BPE reads any text


def test_out_of_vocabulary_tokens_are_counted_and_described(corpus_dir):
    corpus = load_corpus(locate(corpus_dir), level="word", min_freq=3)  # rare words: <unk>
    model = build_model(ModelConfig(embed_size=4, hidden_size=4), len(corpus.vocab))
    path = corpus_dir / "test.txt"
    figures = evaluate_file(model, path, corpus.codec, corpus.vocab, 2, 5, torch.device("cpu"))
    tokens = corpus.codec.corpus_tokens(path.read_text(encoding="utf-8"))
    unknown = sum(t not in corpus.vocab for t in tokens)
    assert unknown > 0 and figures["oov"] == unknown
    assert figures["oov_rate"] == pytest.approx(unknown / len(tokens))
    line = describe("test", figures, "word")
    assert f"; {unknown} out of vocabulary ({100 * unknown / len(tokens):.2f}%), scored as <unk>" in line
