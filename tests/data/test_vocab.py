"""Vocabulary: counting rules, determinism, unknown words, JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.data.vocab import EOS, UNK, Vocab
from rnnkit.errors import RnnkitError


def test_build_orders_by_count_then_token_and_specials_first():
    v = Vocab.build(["b", "a", "c", "b", "a", "b", "d"])
    assert v.tokens == [UNK, EOS, "b", "a", "c", "d"]


def test_min_freq_and_max_size():
    tokens = ["x", "x", "x", "y", "y", "z"]
    assert Vocab.build(tokens, min_freq=2).tokens == [UNK, EOS, "x", "y"]
    assert Vocab.build(tokens, max_size=3).tokens == [UNK, EOS, "x"]


def test_unknown_tokens_map_to_unk_and_round_trip():
    v = Vocab.build(["a", "b"])
    ids = v.encode(["a", "zzz", "b"])
    assert ids.dtype == torch.long
    assert v.decode(ids) == ["a", UNK, "b"]


def test_no_unk_means_unknown_is_an_error():
    v = Vocab(["a", "b"], unk=None)
    with pytest.raises(RnnkitError, match="not in the vocabulary"):
        v.index("c")


def test_save_load_round_trip(tmp_path):
    v = Vocab.build(["ü", "é", "a", "a"])
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


@pytest.mark.parametrize(
    "content, match",
    [
        ("not json", "corrupted vocabulary: not JSON"),
        (json.dumps({"tokens": [1, 2]}), "list of strings"),
        (json.dumps([1]), "list of strings"),
        (json.dumps({"tokens": ["a", "a"]}), "more than once"),
    ],
)
def test_bad_vocab_files(tmp_path, content, match):
    (tmp_path / "v.json").write_text(content)
    with pytest.raises(RnnkitError, match=match):
        Vocab.load(tmp_path / "v.json")


def test_missing_vocab_file(tmp_path):
    with pytest.raises(RnnkitError, match="no such vocabulary"):
        Vocab.load(tmp_path / "nope.json")
