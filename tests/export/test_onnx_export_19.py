"""ONNX export of trained runs (issue 19, item 2): what ``rnnkit.load`` gives, written as one file that
ONNX Runtime runs with the vocabulary in its metadata, answering as the run's own methods do."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from conftest import train_tiny_runs
from rnnkit.config import to_dict
from rnnkit.errors import RnnkitError
from rnnkit.export import export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained language model, tagger (CRF and character feature) and classifier."""
    root = tmp_path_factory.mktemp("runs")
    tag = ["--model.crf=true", "--model.char_embed=4", "--model.char_hidden=4"]
    return train_tiny_runs(root, TINY, tag=tag, classify=["--model.pooling=max", "--model.cell=gru"])


def exported(run, tmp_path):
    """The run exported, its ONNX Runtime session and its metadata (read with onnx alone)."""
    path = tmp_path / "model.onnx"
    result = export_onnx(rnnkit.load(run), path)
    assert result.path == path and path.is_file()
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["rnnkit"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), meta, result


def fresh_state(meta) -> dict[str, np.ndarray]:
    state = meta["state"]
    return {name: np.zeros(state["shape"], np.float32) for name in state["names"]}


def test_a_language_model_scores_lines_as_the_run_does(runs, tmp_path):
    session, meta, result = exported(runs["lm"], tmp_path)
    trained = rnnkit.load(runs["lm"])
    assert result.task == "lm" and "ONNX's own LSTM operator" in result.recurrences["rnn"]
    assert meta["format"] == 1 and meta["config"] == to_dict(trained.config)
    assert meta["vocab"]["tokens"] == trained.vocab.tokens and meta["level"] == "word"
    assert str(runs["lm"]) not in json.dumps(meta)  # nothing of the training machine's paths
    index = {t: i for i, t in enumerate(meta["vocab"]["tokens"])}
    for line in ["w1 w2 w3", "w4 w5 w0 w7 w11 w3"]:
        ids = [index[meta["sentence_end"]]] + [index[w] for w in line.split()] + [index["<eos>"]]
        tokens = np.array(ids, np.int64)[:, None]
        log_probs, *_ = session.run(None, {"tokens": tokens[:-1], **fresh_state(meta)})
        logprob = float(np.take_along_axis(log_probs[:, 0], tokens[1:], axis=1).sum())
        assert logprob == pytest.approx(trained.score([line])[0]["logprob"], abs=1e-4)


def test_a_tagger_with_a_crf_and_characters_tags_as_the_run_does(runs, tmp_path):
    session, meta, result = exported(runs["tag"], tmp_path)
    assert set(result.recurrences) == {"rnn", "chars.rnn", "crf"}
    sentences = [["the", "cat", "sat", "on", "the", "mat", "."], ["dog"], ["a", "zebra", "ran"]]
    words, chars = meta["words"], meta["chars"]

    def index(vocab, token):
        return (
            vocab["tokens"].index(token) if token in vocab["tokens"] else vocab["tokens"].index(vocab["unk"])
        )

    L, N = max(map(len, sentences)), len(sentences)
    ids, where = np.zeros((L, N), np.int64), np.zeros((L, N), np.int64)
    distinct = sorted({w for s in sentences for w in s})
    for n, s in enumerate(sentences):
        ids[: len(s), n] = [index(words, w) for w in s]
        where[: len(s), n] = [distinct.index(w) for w in s]
    spelled = np.zeros((max(map(len, distinct)), len(distinct)), np.int64)
    for n, w in enumerate(distinct):
        spelled[: len(w), n] = [index(chars, c) for c in w]
    feeds = {"words": ids, "lengths": np.array([len(s) for s in sentences]), "chars": spelled}
    feeds.update(char_lengths=np.array([len(w) for w in distinct]), word_index=where, **fresh_state(meta))
    _, tags, *_ = session.run(None, feeds)
    predicted = [[meta["tags"][t] for t in tags[: len(s), n]] for n, s in enumerate(sentences)]
    assert predicted == rnnkit.load(runs["tag"]).tag(sentences)


def test_a_classifier_gives_the_run_s_class_probabilities(runs, tmp_path):
    session, meta, _ = exported(runs["classify"], tmp_path)
    sentences = [["the", "film", "good"], ["bad"], ["the", "unseen", "film", "awful"]]
    vocab = meta["words"]["tokens"]
    L = max(map(len, sentences))
    ids = np.zeros((L, len(sentences)), np.int64)
    for n, s in enumerate(sentences):
        ids[: len(s), n] = [vocab.index(w) if w in vocab else vocab.index(meta["words"]["unk"]) for w in s]
    lengths = np.array([len(s) for s in sentences])
    log_probs, *_ = session.run(None, {"words": ids, "lengths": lengths, **fresh_state(meta)})
    expected = [r["probs"] for r in rnnkit.load(runs["classify"]).classify(sentences)]
    assert np.abs(np.exp(log_probs) - np.array(expected)).max() < 1e-4
    assert meta["classes"] == ["negative", "positive"]


def test_an_existing_file_a_directory_or_a_missing_folder_is_refused_in_one_line(runs, tmp_path):
    trained = rnnkit.load(runs["classify"])
    (tmp_path / "taken.onnx").write_bytes(b"mine")
    for path, says in [
        (tmp_path / "taken.onnx", "already exists"),
        (tmp_path, "is a directory"),
        (tmp_path / "no" / "model.onnx", "no such directory"),
    ]:
        with pytest.raises(RnnkitError, match=says) as error:
            export_onnx(trained, path)
        assert "\n" not in str(error.value)
    assert (tmp_path / "taken.onnx").read_bytes() == b"mine"
    export_onnx(trained, tmp_path / "taken.onnx", overwrite=True)
    assert onnx.load(str(tmp_path / "taken.onnx")).graph.node


def test_without_onnx_the_package_imports_and_export_names_what_to_install(runs, tmp_path, monkeypatch):
    code = "import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None; import rnnkit.export"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if not installed
    with pytest.raises(RnnkitError, match=r"needs the onnx package: pip install 'rnnkit\[export\]'"):
        export_onnx(rnnkit.load(runs["classify"]), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
