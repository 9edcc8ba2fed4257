"""One way to load any run from Python (issue 17, item 5): ``rnnkit.load`` gives one object for
every task, and the CLI's verbs print exactly what its methods return."""

from __future__ import annotations

import json
import math

import pytest
import torch

import rnnkit
from conftest import write_toy_lm_corpus, write_toy_sst, write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.inference import ClassifierRun, LanguageModelRun, TaggerRun, generate, score_lines
from rnnkit.tasks.lm import generate as generate_from_tasks

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = write_toy_lm_corpus(tmp_path_factory.mktemp("lm"))
    run = root / "run"
    assert main(["train", "--data", str(root), "--out", str(run), *TINY, "--train.bptt=8"]) == 0
    return run


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory):
    root = write_toy_treebank(tmp_path_factory.mktemp("ud") / "treebank")
    run = root.parent / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--task=tag", *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    root = write_toy_sst(tmp_path_factory.mktemp("sst"))
    run = root / "run"
    args = ["train", "--data", str(root), "--out", str(run), "--task=classify", "--data.classes=2"]
    assert main([*args, *TINY]) == 0
    return run


def test_a_language_model_run_generates_scores_and_gives_the_next_tokens(lm_run):
    trained = rnnkit.load(lm_run)
    assert isinstance(trained, LanguageModelRun) and trained.config.task == "lm"
    model, vocab, config, codec = trained  # unpacks as the tuple load returned before
    assert (model, vocab, config, codec) == (trained.model, trained.vocab, trained.config, trained.codec)
    assert trained[0] is model and not model.training
    # generate: the same text as the function on the same generator
    text = trained.generate("w1", max_tokens=5, seed=3)
    tokens = generate(model, vocab, codec, "w1", 5, generator=torch.Generator().manual_seed(3))
    assert text == codec.join(tokens)
    assert trained.generate("w1", max_tokens=5, seed=3, with_prompt=True) == codec.join(["w1", *tokens])
    # score: per line its log-probability, perplexity and per-token surprisal
    lines = ["w1 w2 w3", "w4 w5"]
    scored = trained.score(lines)
    assert scored == score_lines(model, vocab, codec, lines)
    for line in scored:
        bits = sum(line["surprisal_bits"])
        assert line["logprob"] == pytest.approx(-bits * math.log(2))
        assert line["ppl"] == pytest.approx(math.exp(-line["logprob"] / len(line["surprisal_bits"])))
    top = trained.next("w1", k=3)
    assert len(top) == 3 and all(0 <= p <= 1 for _, p in top) and top[0][1] >= top[-1][1]
    assert generate_from_tasks is generate  # still importable from where it was
    with pytest.raises(RnnkitError, match="'lm' run; tag needs a tagger"):
        trained.tag(["w1 w2"])


def test_a_tagger_run_tags_sentences_as_predict_does(tag_run, tmp_path, capsys):
    trained = rnnkit.load(tag_run)
    assert isinstance(trained, TaggerRun) and trained.codec is None and "the" in trained.vocab
    tags = trained.tag(["the cat sat", ["a", "dog", "ran", "."]])
    assert [len(t) for t in tags] == [3, 4] and all(t in trained.tags for s in tags for t in s)
    raw = tmp_path / "raw.txt"
    raw.write_text("the cat sat\na dog ran .\n")
    capsys.readouterr()
    assert main(["predict", str(tag_run), str(raw), "--json"]) == 0
    assert [json.loads(line)["tags"] for line in capsys.readouterr().out.splitlines()] == tags
    figures = trained.evaluate("test")
    assert 0 <= figures["accuracy"] <= 1 and figures["tokens"] > 0
    assert set(trained.report("test")["labels"]) <= set(trained.tags.tokens)
    with pytest.raises(RnnkitError, match="'tag' run; generate needs a language model"):
        trained.generate("the")


def test_a_classifier_run_gives_every_class_probability_as_predict_does(classify_run, tmp_path, capsys):
    trained = rnnkit.load(classify_run)
    assert isinstance(trained, ClassifierRun) and trained.classes == ["negative", "positive"]
    results = trained.classify(["the film good", ["the", "film", "awful"]])
    for r in results:
        assert len(r["probs"]) == 2 and sum(r["probs"]) == pytest.approx(1.0)
        assert r["name"] == trained.classes[r["class"]] and r["probs"][r["class"]] == max(r["probs"])
    raw = tmp_path / "raw.txt"
    raw.write_text("the film good\nthe film awful\n")
    capsys.readouterr()
    assert main(["predict", str(classify_run), str(raw), "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{k: v for k, v in p.items() if k != "text"} for p in printed] == results
    assert trained.evaluate("valid")["sentences"] == 10
    with pytest.raises(RnnkitError, match="'classify' run; score needs a language model"):
        trained.score(["the film"])
    with pytest.raises(RnnkitError, match="'classify' run; stream needs a language model"):
        trained.stream()


def test_load_refuses_a_checkpoint_name_and_a_directory_that_is_no_run(tmp_path, lm_run):
    with pytest.raises(RnnkitError, match="which must be 'best' or 'last'"):
        rnnkit.load(lm_run, which="first")
    with pytest.raises(RnnkitError, match="not a run directory"):
        rnnkit.load(tmp_path)
    assert isinstance(rnnkit.load(lm_run, which="last"), LanguageModelRun)
