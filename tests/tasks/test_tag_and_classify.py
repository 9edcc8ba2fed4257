"""The tag and classify tasks through the one training loop, from the command line."""

from __future__ import annotations

import json
import random

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.config import load_config
from rnnkit.data.vocab import Vocab
from rnnkit.tasks.classification import Classification, ClassifiedCorpus
from rnnkit.tasks.tagging import load_vocabularies

POS = {"the": "DET", "a": "DET", "cat": "NOUN", "dog": "NOUN", "mat": "NOUN", "sat": "VERB", "ran": "VERB"}
POS |= {"on": "ADP", ".": "PUNCT"}


def conllu(sentences: list[list[str]]) -> str:
    out = []
    for i, words in enumerate(sentences):
        lines = [f"# sent_id = s{i}"] + [
            "\t".join([str(j), w, w, POS[w], "_", "_", "0", "_", "_", "_"]) for j, w in enumerate(words, 1)
        ]
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def pos_sentence(rng: random.Random) -> list[str]:
    return [
        "the",
        rng.choice(["cat", "dog"]),
        rng.choice(["sat", "ran"]),
        "on",
        rng.choice(["the", "a"]),
        "mat",
        ".",
    ]


@pytest.fixture(scope="module")
def treebank(tmp_path_factory):
    root = tmp_path_factory.mktemp("ud")
    rng = random.Random(0)
    for split, n in (("train", 120), ("dev", 20), ("test", 20)):
        (root / f"toy-ud-{split}.conllu").write_text(conllu([pos_sentence(rng) for _ in range(n)]))
    return root


SMALL = ["--model.hidden_size=16", "--model.embed_size=16", "--train.optimizer=adam", "--train.lr=0.01"]
SMALL += ["--train.batch_size=16", "--model.bidirectional=true", "--no-progress"]


def test_pos_tagger_trains_evaluates_and_handles_longer_sentences(treebank, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(treebank), "--out", str(run), "--task=tag", "--train.epochs=4"]
    assert main([*args, *SMALL, "--model.char_embed=8", "--model.char_hidden=8", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test"]["accuracy"] > 0.9
    longer = tmp_path / "longer"
    longer.mkdir()
    long_sentence = ["the", "cat", "sat", "on", "the", "mat"] * 12 + ["."]  # 73 words; training saw 7
    for split in ("train", "dev", "test"):
        (longer / f"x-ud-{split}.conllu").write_text(conllu([long_sentence]))
    assert main(["evaluate", str(run), "--data", str(longer), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["tokens"] == 73 and figures["accuracy"] > 0.9
    # the report counts the same predictions: its confusion matrix gives the evaluated accuracy
    png = tmp_path / "confusion.png"
    assert main(["evaluate", str(run), "--json", "--report", "--confusion", str(png)]) == 0
    figures = json.loads(capsys.readouterr().out)
    matrix, labels = figures["report"]["confusion"], figures["report"]["labels"]
    assert sum(map(sum, matrix)) == figures["tokens"]
    assert sum(matrix[k][k] for k in range(len(labels))) / figures["tokens"] == pytest.approx(
        figures["accuracy"]
    )
    assert [sum(row) for row in matrix] == [figures["report"]["per_label"][t]["support"] for t in labels]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", str(run), "--report"]) == 0
    text = capsys.readouterr().out
    assert "confusion (rows gold, columns predicted):" in text and "precision" in text


def test_a_tag_training_never_saw_is_a_one_line_error(treebank, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(treebank), "--out", str(run), "--task=tag", "--train.epochs=1", *SMALL]
    assert main(args) == 0
    other = tmp_path / "other"
    other.mkdir()
    text = conllu([["the", "cat", "sat"]]).replace("\tVERB\t", "\tAUX\t")
    for split in ("train", "dev", "test"):
        (other / f"y-ud-{split}.conllu").write_text(text)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert (
        "tag 'AUX' never seen in training" in err and "y-ud-test.conllu" in err and len(err.splitlines()) == 1
    )


def test_entity_tagger_with_crf_reports_conlleval_f1(tmp_path, capsys):
    root = tmp_path / "ner"
    root.mkdir()
    rng = random.Random(1)
    names = {"PER": ["John", "Mary"], "LOC": ["Paris", "Rome"]}

    def sentence() -> str:
        kind = rng.choice(["PER", "LOC"])
        name = rng.choice(names[kind])
        verb = "visited" if kind == "PER" else "is"
        return f"{name} NNP I-NP I-{kind}\n{verb} VBD I-VP O\nit PRP I-NP O\n. . O O\n\n"

    for split, n in (("eng.train", 150), ("eng.testa", 20), ("eng.testb", 20)):
        (root / split).write_text("-DOCSTART- -X- O O\n\n" + "".join(sentence() for _ in range(n)))
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(root),
        "--out",
        str(run),
        "--task=tag",
        "--train.epochs=4",
        "--model.crf=true",
    ]
    assert main([*args, *SMALL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test"]["f1"] > 0.9 and {"precision", "recall"} <= set(summary["test"])


def test_predict_writes_conllu_back_and_tags_raw_text(treebank, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(treebank), "--out", str(run), "--task=tag", "--train.epochs=4", *SMALL]
    assert main(args) == 0
    test_file = next(treebank.glob("*test.conllu"))
    out = tmp_path / "pred.conllu"
    assert main(["predict", str(run), str(test_file), "--out", str(out)]) == 0
    assert out.read_text() == test_file.read_text()  # the toy language is learned: gold comes back exactly
    raw = tmp_path / "raw.txt"
    raw.write_text("the dog sat on a mat .\n\nthe cat ran\n")
    capsys.readouterr()
    assert main(["predict", str(run), str(raw)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert [line.split("\t") for line in blocks[1].splitlines()] == [
        ["the", "DET"],
        ["cat", "NOUN"],
        ["ran", "VERB"],
    ]
    assert main(["predict", str(run), str(tmp_path / "missing.txt")]) == 2


def sst_tree(words: list[str], label: int) -> str:
    tree = f"(2 {words[-1]})"
    for w in reversed(words[:-1]):
        tree = f"({label} (2 {w}) {tree})"
    return tree


def test_sentence_classifier_on_sst_style_trees(tmp_path, capsys):
    rng = random.Random(2)
    good, bad, filler = ["good", "great"], ["bad", "awful"], ["the", "movie", "was", "plot"]
    for split, n in (("train", 200), ("dev", 30), ("test", 30)):
        lines = []
        for _ in range(n):
            positive = rng.random() < 0.5
            words = [rng.choice(filler) for _ in range(rng.randint(2, 5))]
            words.insert(rng.randint(0, len(words)), rng.choice(good if positive else bad))
            lines.append(sst_tree(words, 4 if positive else 0))
        (tmp_path / f"{split}.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["train", "--data", str(tmp_path), "--out", str(run), "--task=classify", "--data.classes=2"]
    assert main([*args, "--train.epochs=4", "--model.pooling=max", *SMALL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test"]["accuracy"] > 0.9 and summary["test"]["sentences"] == 30
    assert main(["evaluate", str(run), "--split", "valid", "--json", "--report"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["sentences"] == 30 and figures["report"]["labels"] == ["negative", "positive"]
    matrix = figures["report"]["confusion"]
    assert sum(map(sum, matrix)) == 30 and (matrix[0][0] + matrix[1][1]) / 30 == pytest.approx(
        figures["accuracy"]
    )

    # predict: every tree of the file in order (a neutral one too), its accuracy the evaluated one
    trees = [*(tmp_path / "test.txt").read_text().splitlines(), sst_tree(["the", "plot"], 2)]
    (tmp_path / "to-classify.txt").write_text("\n".join(trees) + "\n")
    assert main(["predict", str(run), str(tmp_path / "to-classify.txt")]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 31 and rows[-1][3] == "the plot"
    gold = [1 if tree.startswith("(4") else 0 for tree in trees[:30]]
    hits = sum(int(row[0]) == g for row, g in zip(rows, gold))
    assert hits / 30 == pytest.approx(summary["test"]["accuracy"])
    assert all(row[1] == ("positive" if row[0] == "1" else "negative") for row in rows)
    (tmp_path / "raw.txt").write_text("the movie was great\n\nawful plot\n")
    assert main(["predict", str(run), str(tmp_path / "raw.txt"), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["name"] for o in out] == ["positive", "negative"] and out[1]["text"] == "awful plot"
    assert all(sum(o["probs"]) == pytest.approx(1.0) for o in out)
    assert main(["predict", str(run), str(tmp_path / "raw.txt"), "--format", "conllu"]) == 2
    assert "for taggers" in capsys.readouterr().err


def test_a_malformed_treebank_line_is_named(tmp_path, capsys):
    good = conllu([["the", "cat", "sat"]])
    (tmp_path / "m-ud-train.conllu").write_text(good + "1\tthe\tthe\tDET\n\n")  # 4 columns, not 10
    (tmp_path / "m-ud-dev.conllu").write_text(good)
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--task=tag", *SMALL]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "m-ud-train.conllu" in err and "line 6" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written for a corpus that cannot be read


def test_classifier_batches_hold_equal_lengths_from_across_the_file():
    """SST lists a sentence's phrases together; a batch must not be one sentence's phrases."""
    train = [(["w"] * (1 + i % 3), 0 if i < 150 else 1) for i in range(300)]  # labels in file order
    words = Vocab.build(["w"], specials=("<pad>", "<unk>"))
    config = load_config(None, ["--task=classify", "--train.batch_size=10", "--model.hidden_size=4"])
    task = Classification(config, ClassifiedCorpus(train, None, None, words, 2), torch.device("cpu"))
    batches = [[train[i] for i in b] for b in task.train_batches]
    assert sorted(i for b in task.train_batches for i in b) == list(range(300))
    assert all(len({len(ws) for ws, _ in b}) == 1 for b in batches)
    mixed = sum(len({label for _, label in b}) == 2 for b in batches)
    assert mixed >= 0.8 * len(batches)


def test_lowercase_and_zero_digits_key_the_word_vectors(treebank, tmp_path, capsys):
    """With data.lowercase and data.zero_digits a word-only tagger reads 'THE' as 'the' and
    '1996' as '2001': its vocabulary holds only the keys and its tags cannot tell them apart."""
    run = tmp_path / "run"
    args = ["train", "--data", str(treebank), "--out", str(run), "--task=tag", "--train.epochs=2", *SMALL]
    assert main([*args, "--data.lowercase=true", "--data.zero_digits=true", "--json"]) == 0
    capsys.readouterr()
    words, _, _, _ = load_vocabularies(run)
    assert "the" in words and "The" not in words
    raw = tmp_path / "raw.txt"
    raw.write_text("the cat sat on 1996 mat .\nTHE CAT SAT ON 2001 MAT .\n")
    assert main(["predict", str(run), str(raw)]) == 0
    first, second = capsys.readouterr().out.strip().split("\n\n")
    assert [line.split("\t")[1] for line in first.splitlines()] == [
        line.split("\t")[1] for line in second.splitlines()
    ]
    lm = ["train", "--data", str(treebank), "--out", str(tmp_path / "lm"), "--data.lowercase=true"]
    assert main(lm) == 2
    assert "data.lowercase applies to tasks 'tag' and 'classify' only" in capsys.readouterr().err
