"""The streaming state API (issue 19, item 4): a stream reads text in pieces cut anywhere, or
tokens, and scores them exactly as the whole text read at once; its state goes to bytes and back.

The oracles are the whole-text figures: :meth:`LanguageModel.log_prob` over all of a text's
tokens in one call, :func:`rnnkit.inference.score_lines` for one line and
:meth:`Codec.corpus_tokens` for how a text is tokenized. Random (untrained) weights serve as
well as trained ones for parity; one tiny trained run covers the ``rnnkit.load`` path.
"""

from __future__ import annotations

import functools
import json
import math
import random

import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit
from conftest import CELL_CASES, CELL_IDS, write_toy_lm_corpus
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.data.text import Codec
from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError
from rnnkit.inference import as_read, score_lines
from rnnkit.models.config import build_model
from rnnkit.stream import Stream

WORDS = [f"w{i}" for i in range(12)]
VOCAB = Vocab([UNK, EOS, *WORDS])
WORD = Codec("word")
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def model_of(case, layers: int, dtype: torch.dtype, seed: int = 0, vocab: Vocab = VOCAB, size: int = 7):
    """A random language model of ``case``'s cell, its weights made less tame than at init."""
    _, cell, options, _ = case
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, embed_size=size, hidden_size=size, num_layers=layers, **options)
    model = build_model(config, len(vocab))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype).eval()


def random_text(rng: random.Random, lines: int = 3) -> str:
    """Lines of known words, an unknown one now and then, spaces and tabs between them."""
    out = []
    for _ in range(lines):
        words = [rng.choice([*WORDS, "zz"]) for _ in range(rng.randint(3, 9))]
        out.append("".join(w + rng.choice([" ", " ", "  ", "\t"]) for w in words).rstrip())
    return "\n".join(out) + "\n"


def pieces(rng: random.Random, text: str, n: int) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(n, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@torch.no_grad()
def whole(model, vocab: Vocab, codec: Codec, text: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The text's tokens as read, each one's log P, and the next distribution: all in one call."""
    tokens, _ = as_read(vocab, codec.corpus_tokens(text))
    ids = torch.tensor([vocab.index(codec.sentence_end)] + [vocab.index(t) for t in tokens])
    logp, _ = model.log_prob(ids[:-1, None], ids[1:, None])
    h, _ = model(ids[:, None])
    return tokens, logp[:, 0].double(), model.head.log_probs(h[-1])[0]


def feed_all(stream: Stream, parts: list[str]) -> tuple[list[str], list[float]]:
    tokens, logprobs = [], []
    for part in parts:
        read = stream.feed(part)
        tokens += read.tokens
        logprobs += read.logprobs
    return tokens, logprobs


# -- parity: pieces cut anywhere score as the whole text, for every cell ------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("case", CELL_CASES, ids=CELL_IDS)
def test_text_fed_in_random_pieces_scores_as_the_whole_text(case, layers, dtype):
    seed = CELL_IDS.index(case[0]) * 10 + layers
    rng = random.Random(seed)
    atol = TOLERANCE[dtype]
    model = model_of(case, layers, dtype, seed)
    text = random_text(rng)
    tokens, expected, distribution = whole(model, VOCAB, WORD, text)
    window = (1, 5, 1024)[seed % 3]  # the model given 1, 5 or all tokens at a time
    stream = Stream(model, VOCAB, WORD, window=window)
    parts = pieces(rng, text, 12)
    k = rng.randrange(1, len(parts))
    read, logprobs = feed_all(stream, parts[:k])
    blob = stream.snapshot()
    rest = feed_all(stream, parts[k:])
    read, logprobs = read + rest[0], logprobs + rest[1]

    assert read == tokens and stream.token_count == len(tokens) and stream.pending == ""
    torch.testing.assert_close(torch.tensor(logprobs, dtype=torch.float64), expected, rtol=0, atol=atol)
    assert stream.logprob == pytest.approx(expected.sum().item(), abs=atol * len(tokens))
    assert stream.perplexity == pytest.approx(math.exp(-stream.logprob / len(tokens)))
    assert stream.oov == read.count(UNK) and stream.unknown == (["zz"] if "zz" in text.split() else [])
    torch.testing.assert_close(stream.log_probs(), distribution, rtol=0, atol=atol)
    # the first line alone is the line score_lines scores
    first = text.split("\n")[0]
    line = score_lines(model, VOCAB, WORD, [first])[0]
    alone = Stream(model, VOCAB, WORD, window=window)
    bits = [-x / math.log(2) for x in feed_all(alone, pieces(rng, first, 4))[1]]
    bits += alone.end_line().surprisal_bits
    assert alone.token_count == line["token_count"] and alone.oov == line["oov"]
    torch.testing.assert_close(torch.tensor(bits), torch.tensor(line["surprisal_bits"]), rtol=0, atol=atol)

    # a snapshot after piece k, restored into a stream of a model built afresh, goes on the same
    again = Stream(model_of(case, layers, dtype, seed), VOCAB, WORD, window=window)
    again.restore(blob)
    assert feed_all(again, parts[k:]) == rest
    assert again.logprob == stream.logprob and again.token_count == stream.token_count
    assert torch.equal(again.log_probs(), stream.log_probs())


def test_a_word_is_not_scored_until_the_text_after_it_shows_where_it_ends():
    stream = Stream(model_of(CELL_CASES[-1], 1, torch.float64), VOCAB, WORD)
    assert stream.feed("w1 w2").tokens == ["w1"] and stream.pending == " w2"
    read = stream.feed("3 w4")  # "w2" went on: "w23", an unknown word, reported as such
    assert read.tokens == [UNK] and read.unknown == ["w23"] and stream.pending == " w4"
    assert stream.feed("  ").tokens == ["w4"] and stream.pending == "  "
    assert stream.end_line().tokens == [EOS] and stream.pending == ""
    assert (stream.oov, stream.unknown, stream.token_count) == (1, ["w23"], 4)
    assert stream.feed("w5 w").tokens == ["w5"]
    read = stream.flush()  # "w" declared whole: read, and not a word of the vocabulary
    assert read.tokens == [UNK] and read.unknown == ["w"] and stream.pending == ""
    assert stream.feed("w6").tokens == [] and stream.feed_tokens(["w7", "w8"]).tokens == ["w6", "w7", "w8"]


# -- piece rules of every text level: the stream's tokens are the whole text's -------------------

SAMPLE = "the cat's 12 dogs sat, on the mat.\nA  dog\tran über   1.5 km!\n"
ALPHABET = ["a", "b", "é", "'", "s", ".", "!", "1", " ", " ", "  ", "\t", "\xa0", "\u2003", "\x1c", "\x0b"]
ALPHABET += ["\r", "\x85", "\n", "<unk>", "cat", " the"]


@functools.cache
def level_model(level: str):
    if level == "bpe":
        codec = Codec.train_bpe(SAMPLE.splitlines(keepends=True) * 5, 300)
        vocab = Vocab(sorted(codec.tokenizer.get_vocab(), key=codec.tokenizer.token_to_id), unk=None)
    else:
        codec = Codec(level)
        vocab = Vocab.build(codec.corpus_tokens(SAMPLE), specials=(UNK,) if level == "char" else (UNK, EOS))
    return model_of(CELL_CASES[4], 1, torch.float64, vocab=vocab), vocab, codec


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_every_level_reads_pieces_as_the_whole_text(level, data):
    text = "".join(data.draw(st.lists(st.sampled_from(ALPHABET), max_size=30))) + "\n"
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=8)) if len(text) > 1 else [])
    model, vocab, codec = level_model(level)
    tokens, expected, distribution = whole(model, vocab, codec, text)
    stream = Stream(model, vocab, codec)
    read, logprobs = feed_all(stream, [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])])
    assert read == tokens
    torch.testing.assert_close(torch.tensor(logprobs, dtype=torch.float64), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(stream.log_probs(), distribution, rtol=0, atol=1e-10)


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
def test_an_endless_unbroken_string_is_held_back_only_up_to_the_limit(level):
    model, vocab, codec = level_model(level)
    stream = Stream(model, vocab, codec, limit=16)
    for text in ("x" * 7, " " * 7):  # one endless word, then endless whitespace
        for _ in range(40):
            stream.feed(text)
            assert len(stream.pending) <= 16
    assert len(stream.snapshot()) < 4096  # what a snapshot holds is bounded too
    assert stream.token_count > 0


# -- the rnnkit.load path: a trained run streams, snapshots to a file, restores ----------------

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress", "--train.bptt=8"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("lm"))
    run = root / "run"
    assert main(["train", "--data", str(root), "--out", str(run), *TINY]) == 0
    return run


def test_a_loaded_run_streams_as_it_scores_and_restores_in_a_fresh_process_state(lm_run, tmp_path):
    trained = rnnkit.load(lm_run)
    stream = trained.stream()
    line = "w1 w2 w3 w4 w5"
    for part in ("w1 w", "2 w3", " w4 w5"):
        stream.feed(part)
    assert stream.pending == " w5"
    stream.flush()
    for (token, p), (want, q) in zip(stream.next(5), trained.next(line, 5)):
        assert token == want and p == pytest.approx(q, abs=1e-6)
    stream.end_line()
    scored = trained.score([line])[0]
    assert stream.logprob == pytest.approx(scored["logprob"], abs=1e-5)
    assert stream.token_count == scored["token_count"]
    stream.feed("w6 w")
    path = tmp_path / "session.safetensors"
    stream.save(path)
    blob = stream.snapshot()

    fresh = rnnkit.load(lm_run)  # a freshly loaded run: the fingerprint is computed again
    from_file = fresh.stream()
    from_file.load(path)
    from_bytes = fresh.stream(restore=blob)
    assert from_file.pending == from_bytes.pending == " w"
    results = [s.feed("7 w8\n") for s in (stream, from_file, from_bytes)]
    assert results[0] == results[1] == results[2] and results[0].tokens == ["w7", "w8", EOS]
    assert stream.logprob == from_file.logprob == from_bytes.logprob
    assert stream.next(3) == from_bytes.next(3)


# -- hostile snapshots: one line each, the stream unchanged -------------------------------------


def metadata_of(blob: bytes) -> dict[str, str]:
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size])["__metadata__"]


def resaved(blob: bytes, **changes: str) -> bytes:
    """``blob`` with its metadata changed."""
    return safetensors.torch.save(safetensors.torch.load(blob), metadata_of(blob) | changes)


def same_snapshot(a: bytes, b: bytes) -> bool:
    """Whether two snapshots hold the same (safetensors writes its metadata in any order)."""
    x, y = safetensors.torch.load(a), safetensors.torch.load(b)
    tensors = x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    return tensors and metadata_of(a) == metadata_of(b)


def refused(stream: Stream, blob, *words: str) -> None:
    before = stream.snapshot()
    with pytest.raises(RnnkitError) as err:
        stream.restore(blob)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert same_snapshot(stream.snapshot(), before)  # nothing restored by half


def test_a_snapshot_of_another_model_a_corrupt_one_or_another_version_is_refused_in_one_line(lm_run):
    trained = rnnkit.load(lm_run)
    stream = trained.stream()
    stream.feed("w1 w2 w")
    blob = stream.snapshot()
    target = rnnkit.load(lm_run).stream()

    other = rnnkit.load(lm_run)
    with torch.no_grad():
        other.model.head.proj.bias.add_(1e-3)  # the same shapes, other weights
    refused(other.stream(), blob, "another model", "weights")
    lstm = model_of(CELL_CASES[-1], 1, torch.float32, vocab=trained.vocab, size=8)  # one layer, not 2
    refused(Stream(lstm, trained.vocab, trained.codec), blob, "another model", "tensor ")
    gru = model_of(CELL_CASES[4], 2, torch.float32, vocab=trained.vocab, size=8)
    refused(Stream(gru, trained.vocab, trained.codec), blob, "another model", "cell")

    for cut in (0, 7, 50, len(blob) // 2, len(blob) - 1):
        refused(target, blob[:cut], "snapshot", "truncated or corrupt")
    refused(target, b"\x00" * 8 + b"garbage bytes that are no safetensors", "not a stream snapshot")
    refused(target, bytes(random.Random(0).randrange(256) for _ in range(300)), "not a stream snapshot")
    refused(target, resaved(blob, version="2"), "format version '2'", "reads version 1")
    refused(target, resaved(blob, format="other"), "not a stream snapshot")
    refused(target, safetensors.torch.save({"x": torch.zeros(2)}), "not a stream snapshot")
    refused(target, resaved(blob, logprob="zz"), "corrupt stream snapshot")
    refused(target, resaved(blob, state="gru"), "corrupt stream snapshot")
    refused(target, "a string", "a snapshot is bytes")
    with pytest.raises(RnnkitError, match=r"no such stream snapshot$"):
        target.load(lm_run / "missing.safetensors")
    target.restore(blob)  # the good one still restores, and goes on as the stream it came from
    assert target.feed("3 ") == stream.feed("3 ")


def test_arguments_a_stream_cannot_take_are_refused_in_one_line():
    model = model_of(CELL_CASES[-1], 1, torch.float64)
    stream = Stream(model, VOCAB, WORD)
    with pytest.raises(RnnkitError, match="tokens go to feed_tokens"):
        stream.feed(["w1"])  # type: ignore[arg-type]
    with pytest.raises(RnnkitError, match="text goes to feed"):
        stream.feed_tokens("w1 w2")
    with pytest.raises(RnnkitError, match="k must be a positive integer"):
        stream.next(0)
    with pytest.raises(RnnkitError, match="limit must be at least 8"):
        Stream(model, VOCAB, WORD, limit=2)
    config = ModelConfig(cell="gru", embed_size=4, hidden_size=4, num_layers=1, bidirectional=True)
    with pytest.raises(RnnkitError, match=r"bidirectional language model .* cannot stream"):
        Stream(build_model(config, len(VOCAB)), VOCAB, WORD)
