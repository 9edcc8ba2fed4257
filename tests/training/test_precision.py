"""train.precision = "bf16": forward passes under bfloat16 autocast (on the CPU here, on
CUDA where there is one); weights and optimizer stay fp32; the figures stay close to fp32."""

from __future__ import annotations

import pytest
import torch

import rnnkit.training.loop as loop
from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate

SETTINGS = ["--model.cell=lstm", "--model.hidden_size=32", "--model.embed_size=32", "--model.num_layers=2"]
SETTINGS += ["--model.dropout=0.1", "--train.epochs=3", "--train.batch_size=8", "--train.bptt=10"]
SETTINGS += ["--train.optimizer=adam", "--train.lr=0.01", "--train.log_every=1000"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_corpus(locate(write_toy_lm_corpus(tmp_path_factory.mktemp("bf16"), vocab=20, train=200)))


NO_CPU_BF16 = pytest.mark.skipif(
    loop.cpu_bf16_problem() is not None,
    reason=f"this CPU's torch has no bf16 recurrent layer ({loop.cpu_bf16_problem()}): bf16 is refused "
    "here (tests/test_hostile_arguments_18.py checks the refusal)",
)


@NO_CPU_BF16
def test_bf16_runs_the_products_in_bf16_and_ends_close_to_fp32(corpus, tmp_path):
    seen = set()
    original = loop.make_task

    def make_task(*args, **kwargs):
        task = original(*args, **kwargs)
        task.model.head.proj.register_forward_hook(lambda m, a, out: seen.add(out.dtype))
        return task

    loop.make_task = make_task
    try:
        bf16 = loop.fit(
            load_config(None, [*SETTINGS, "--train.precision=bf16"]), corpus, tmp_path / "b", False
        )
    finally:
        loop.make_task = original
    fp32 = loop.fit(load_config(None, SETTINGS), corpus, tmp_path / "f", progress=False)
    assert seen == {torch.bfloat16}  # training and evaluation both under autocast
    a, b = fp32["best_valid"]["loss"], bf16["best_valid"]["loss"]
    assert a != b  # it did run differently
    assert abs(a - b) / a < 0.02, (a, b)
    from conftest import last_weights

    assert all(t.dtype == torch.float32 for t in last_weights(tmp_path / "b").values())  # weights stay fp32


@NO_CPU_BF16
def test_bf16_tagger_with_characters_and_crf_trains(tmp_path):
    root = write_toy_treebank(tmp_path / "ud", train=40)
    from rnnkit.tasks.tagging import load_tagged

    settings = ["--task=tag", "--model.bidirectional=true", "--model.hidden_size=16", "--model.embed_size=16"]
    settings += ["--model.char_embed=8", "--model.char_hidden=8", "--model.crf=true", "--train.epochs=4"]
    settings += [
        "--train.optimizer=adam",
        "--train.lr=0.02",
        "--train.batch_size=4",
        "--train.precision=bf16",
    ]
    summary = loop.fit(load_config(None, settings), load_tagged(root), tmp_path / "run", progress=False)
    assert summary["test"]["accuracy"] > 0.9  # each word has one tag: easy when it trains at all
