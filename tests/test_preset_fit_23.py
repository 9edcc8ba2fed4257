"""A preset meets a corpus it was not made for (issue 23): its adaptive-softmax cutoffs scale with
the vocabulary, and a corpus far from the one it was calibrated on is named in a warning.

Before: the 15-minute preset's cutoffs [2000, 5000], tuned for PTB's 10k words, put 28,278 of a
33k vocabulary in its last cluster, and nothing said so.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

import rnnkit
from conftest import run_rnnkit, write_toy_lm_corpus
from rnnkit import presets
from rnnkit.cli.train import preset_notes
from rnnkit.config import load_config, scaled_cutoffs


def corpus_of(words: int, tokens: int) -> SimpleNamespace:
    return SimpleNamespace(vocab=range(words), train=torch.zeros(tokens, dtype=torch.long))


def test_the_ptb_presets_cutoffs_scale_with_the_vocabulary():
    config = load_config("ptb-15min", [])
    assert presets.calibration("ptb-15min") == ("PTB", 10000, 929589)
    assert scaled_cutoffs(config.model, 10000) == [2000, 5000]  # PTB: the preset as measured
    assert scaled_cutoffs(config.model, 33278) == [6656, 16639]
    unscaled = dataclasses.replace(config.model, cutoffs_vocab=None)
    assert scaled_cutoffs(unscaled, 33278) == [2000, 5000]


def test_a_corpus_like_ptb_gets_no_warning_and_a_bigger_one_does():
    config = load_config("ptb-15min", [])
    assert preset_notes("ptb-15min", config, corpus_of(10000, 929589)) == []
    notes = preset_notes("ptb-15min", config, corpus_of(33278, 2100000))
    assert notes[0].startswith("note: the adaptive softmax's cutoffs [2000, 5000] were set for 10000 words")
    assert "[6656, 16639]" in notes[0]
    assert notes[1].startswith("warning: preset ptb-15min was calibrated on PTB")
    assert "33278 words (3.3x) and 2100000 training tokens (2.3x)" in notes[1]
    assert preset_notes(None, load_config(None, []), corpus_of(33278, 2100000)) == []


def test_training_with_a_preset_on_another_corpus_scales_and_warns(tmp_path):
    data = write_toy_lm_corpus(tmp_path, vocab=40, length=6, train=80, valid=10)
    run = tmp_path / "run"
    tiny = ["--model.hidden_size=16", "--model.embed_size=16", "--train.epochs=1", "--no-progress"]
    proc = run_rnnkit("train", "--data", str(data), "--out", str(run), "--config", "ptb-3min", *tiny)
    assert proc.returncode == 0, proc.stderr
    words = len(rnnkit.load(run).vocab)
    expected = [round(2000 * words / 10000), round(5000 * words / 10000)]
    assert f"scaled to {expected} for this vocabulary of {words}" in proc.stderr
    assert "warning: preset ptb-3min was calibrated on PTB" in proc.stderr
    head = rnnkit.load(run).model.head
    assert [int(c) for c in head.asm.cutoffs[:-1]] == expected
