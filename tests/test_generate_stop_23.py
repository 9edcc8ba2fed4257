"""``generate`` on paragraph-level corpora (issue 23): ``stop`` ends a sample at a token such as a
full stop, and ``no_unk`` never draws ``<unk>``.

Before: a sample ran to the token limit through several sentences (``<eos>`` ends a paragraph
on such corpora), and samples were full of ``<unk>`` with no way to forbid it. The model here
is built so that ``<unk>`` and ``.`` are likely: what the options change is plain to see.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from conftest import assert_one_line_error, run_rnnkit, write_toy_lm_corpus
from rnnkit.config import ModelConfig
from rnnkit.data.text import Codec
from rnnkit.data.vocab import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.inference import generate
from rnnkit.models.config import build_model

WORDS = ["<eos>", "<unk>", "the", "cat", "sat", ".", "on", "mat"]


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    config = dataclasses.replace(ModelConfig(), cell="lstm", embed_size=8, hidden_size=8)
    model = build_model(config, len(WORDS)).eval()
    with torch.no_grad():  # <unk> and "." likely, <eos> never: a sample runs to its limit
        bias = torch.zeros(len(WORDS))
        bias[WORDS.index("<unk>")], bias[WORDS.index(".")], bias[0] = 2.0, 0.5, -30.0
        model.head.proj.bias.copy_(bias)
    return model, Vocab(WORDS), Codec("word")


def sample(lm, seed: int, **options) -> list[str]:
    model, vocab, codec = lm
    g = torch.Generator().manual_seed(seed)
    return generate(model, vocab, codec, "the", 40, generator=g, **options)


def test_no_unk_never_draws_unk_and_without_it_unk_is_common(lm):
    plain = [t for s in range(20) for t in sample(lm, s)]
    assert plain.count("<unk>") > len(plain) / 4
    assert "<unk>" not in [t for s in range(20) for t in sample(lm, s, no_unk=True)]


def test_stop_ends_the_sample_at_the_first_stop_token_and_keeps_it(lm):
    for s in range(20):
        plain, stopped = sample(lm, s), sample(lm, s, stop=".")
        if "." not in plain:
            assert stopped == plain
            continue
        assert stopped == plain[: plain.index(".") + 1]  # the same draws, cut after the stop
    assert any("." in sample(lm, s) and len(sample(lm, s)) == 40 for s in range(20))
    several = sample(lm, 3, stop=[".", "mat"])
    assert several[-1] in (".", "mat") and not {".", "mat"} & set(several[:-1])


def test_an_empty_stop_token_is_refused(lm):
    with pytest.raises(RnnkitError, match="--stop must be a token"):
        sample(lm, 0, stop=" ")


def test_the_command_line_stops_at_a_token_and_never_draws_unk(tmp_path):
    data = write_toy_lm_corpus(tmp_path, vocab=6, length=8, train=40, valid=8)
    run = tmp_path / "run"
    tiny = ["--model.hidden_size=4", "--model.embed_size=4", "--train.epochs=1", "--no-progress"]
    assert run_rnnkit("train", "--data", str(data), "--out", str(run), *tiny).returncode == 0

    def samples(*options: str) -> list[list[str]]:
        many = ["--num", "30", "--max-tokens", "20", "--no-stop", "--json"]
        proc = run_rnnkit("generate", str(run), *many, *options)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line)["text"].split() for line in proc.stdout.splitlines()]

    assert any("<unk>" in s for s in samples())  # an untrained model draws it now and then
    assert not any("<unk>" in s for s in samples("--no-unk"))
    for s in samples("--stop", "w3", "--stop", "w4"):
        cut = [i for i, token in enumerate(s) if token in ("w3", "w4")]
        assert cut == [len(s) - 1] or (not cut and len(s) == 20), s
    assert_one_line_error(run_rnnkit("generate", str(run), "--stop", " "), "--stop must be a token")
