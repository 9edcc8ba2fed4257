"""Byte-level BPE through Hugging Face tokenizers: lossless, learned on train only, saved as JSON."""

from __future__ import annotations

import pytest

from rnnkit.data.corpora import load_corpus, locate
from rnnkit.data.text import TOKENIZER_FILE, Codec
from rnnkit.errors import RnnkitError

TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log.\nthe cat saw the dog.\n" * 30
    + "a rat ran past the cat and the dog.\n" * 10
)


def test_bpe_round_trips_any_text_and_learns_merges():
    codec = Codec.train_bpe(TEXT.splitlines(keepends=True), vocab_size=300)
    tokens = codec.corpus_tokens("the cat sat.\n")
    assert len(tokens) < len("the cat sat.\n")  # merges were learned: fewer tokens than bytes
    for text in ("the cat sat.\n", "Ünïcödé 猫 never seen\n\n", "  spaces\tand\ttabs "):
        assert codec.join(codec.corpus_tokens(text)) == text
    assert codec.ends_sentence(codec.sentence_end) and not codec.ends_sentence(tokens[0])


def test_bpe_corpus_splits_by_characters_and_never_sees_validation(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT + "zebra xylophone quux\n" * 3)  # only in the last 10%: validation
    corpus = load_corpus(locate(path, valid_fraction=0.1), level="bpe", max_size=300)
    assert corpus.vocab.unk is None and len(corpus.vocab) <= 300
    assert "Ġzebra" not in corpus.vocab and "Ġxylophone" not in corpus.vocab
    text = corpus.codec.join(corpus.vocab.decode(corpus.train)) + corpus.codec.join(
        corpus.vocab.decode(corpus.valid)
    )
    assert text == path.read_text()  # nothing lost at the split or in the tokenizer


def test_bpe_tokenizer_saved_and_loaded(tmp_path):
    codec = Codec.train_bpe(TEXT.splitlines(keepends=True), vocab_size=280)
    codec.save(tmp_path)
    again = Codec.load(tmp_path, "bpe")
    assert again.corpus_tokens(TEXT[:200]) == codec.corpus_tokens(TEXT[:200])
    (tmp_path / TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(RnnkitError, match="not a tokenizers JSON file"):
        Codec.load(tmp_path, "bpe")
    (tmp_path / TOKENIZER_FILE).unlink()
    with pytest.raises(RnnkitError, match="missing"):
        Codec.load(tmp_path, "bpe")


def test_bpe_size_below_the_byte_alphabet_is_refused():
    with pytest.raises(RnnkitError, match="at least 256"):
        Codec.train_bpe(["abc\n"], vocab_size=100)


def test_ptb_unk_is_one_special_token_and_tokens_read_as_text():
    """PTB writes unknown words as a literal <unk>: BPE must keep it whole, never as '<', 'unk', '>'."""
    codec = Codec.train_bpe((TEXT.replace("rat", "<unk>")).splitlines(keepends=True), vocab_size=300)
    tokens = codec.corpus_tokens("a <unk> ran past the <unk>.\n")
    assert tokens.count("<unk>") == 2 and not {"<", "unk", ">", "Ġ<"} & set(tokens)
    assert codec.join(tokens) == "a <unk> ran past the <unk>.\n"  # still lossless
    assert codec.corpus_tokens("x<unk>y\n")[1] == "<unk>"
    assert [codec.token_text(t) for t in codec.corpus_tokens("the cat\n")] == ["the", " cat", "\n"]
    assert Codec("word").token_text("Ġcat") == "Ġcat"  # only BPE tokens are byte-level


def test_character_generation_ends_at_a_blank_line_not_at_every_newline():
    char, word = Codec("char"), Codec("word")
    assert not char.ends_text("a", "\n") and char.ends_text("\n", "\n") and not char.ends_text("\n", "a")
    assert word.ends_text(None, "<eos>") and not word.ends_text("<eos>", "a")
