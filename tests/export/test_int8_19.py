"""int8 inference (issue 19, item 3): ONNX Runtime's dynamic quantization of an export, the
exported file run from Python (:class:`rnnkit.export.OnnxModel`), and torch's dynamic
quantization of rnnkit's own models.

The tolerances are measured, with a margin: on the small trained language model here, int8
log-probabilities differ from float32 ones by a mean of 0.0014 nats (ONNX Runtime, 7-bit
weights; 0.0074 with 8-bit ones, which saturate on CPUs without VNNI) and 0.0018 (torch);
bench/int8.py measures what int8 costs in perplexity and accuracy on PTB and EWT.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnkit
from conftest import write_toy_lm_corpus, write_toy_treebank
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.data.conll import Sentence
from rnnkit.errors import RnnkitError
from rnnkit.export import OnnxModel, export_onnx, quantize_model, quantize_onnx, read_metadata, to_onnx
from rnnkit.export.quantize import Int8Recurrence
from rnnkit.layers.rnn import RNN
from rnnkit.models.config import build_model, build_tagger

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SMALL = ["--model.hidden_size=64", "--model.embed_size=32", "--train.epochs=1", "--train.threads=1"]
SMALL += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]
MEAN_GAP = 0.01
"""Mean absolute difference of log-probabilities, int8 vs float32, allowed (measured 0.0014-0.0032)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small trained LSTM language model and an LSTM tagger with a character feature."""
    root = tmp_path_factory.mktemp("runs")
    (root / "lm").mkdir()
    corpus = write_toy_lm_corpus(root / "lm")
    assert (
        main(["train", "--data", str(corpus), "--out", str(root / "lm-run"), *SMALL, "--train.bptt=8"]) == 0
    )
    treebank = write_toy_treebank(root / "treebank")
    tag = ["--task=tag", "--model.char_embed=4", "--model.char_hidden=4"]
    assert main(["train", "--data", str(treebank), "--out", str(root / "tag-run"), *tag, *SMALL]) == 0
    return {task: root / f"{task}-run" for task in ("lm", "tag")}


@pytest.fixture(scope="module")
def lm_files(runs, tmp_path_factory):
    """The language model exported in float32 and in int8."""
    out = tmp_path_factory.mktemp("lm-files")
    trained = rnnkit.load(runs["lm"])
    return {
        "fp32": export_onnx(trained, out / "fp32.onnx"),
        "int8": export_onnx(trained, out / "int8.onnx", quantize="int8"),
    }


def test_an_int8_export_is_four_times_smaller_and_says_how_each_part_runs(lm_files):
    fp32, int8 = lm_files["fp32"], lm_files["int8"]
    assert fp32.quantized is None and int8.quantized == "int8"
    assert fp32.path.stat().st_size / int8.path.stat().st_size > 3.3
    ops = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and not ops & {"LSTM", "MatMul"}
    assert "DynamicQuantizeLSTM (int8 weights)" in int8.recurrences["rnn"]
    assert "int8 weights" in int8.lines()[0]
    meta = read_metadata(onnx.load(str(int8.path)))
    assert (
        meta["quantized"]["weights"] == "int8"
        and meta["vocab"] == read_metadata(onnx.load(str(fp32.path)))["vocab"]
    )


def test_int8_log_probabilities_stay_close_to_float32_and_stream_as_one_call(lm_files):
    fp32, int8 = (OnnxModel(lm_files[k].path, threads=1) for k in ("fp32", "int8"))
    tokens = np.random.default_rng(0).integers(0, len(fp32.meta["vocab"]["tokens"]), (20, 6))
    exact, _ = fp32.log_probs(tokens)
    rounded, state = int8.log_probs(tokens)
    gap = np.abs(rounded - exact)
    assert 0 < gap.mean() < MEAN_GAP and gap.max() < 20 * MEAN_GAP
    assert np.allclose(np.exp(rounded).sum(-1), 1, atol=1e-4)
    first, carried = int8.log_probs(tokens[:7])
    second, final = int8.log_probs(tokens[7:], carried)
    # each call quantizes its own activations: streamed pieces agree to int8 rounding, not exactly
    assert np.abs(np.concatenate([first, second]) - rounded).max() < 20 * MEAN_GAP
    assert all(np.abs(a - b).max() < 20 * MEAN_GAP for a, b in zip(final, state))
    scored, _ = fp32.score(tokens[:-1], tokens[1:])
    assert np.allclose(scored, np.take_along_axis(exact[:-1], tokens[1:, :, None], -1)[..., 0])


def test_an_int8_scoring_graph_scores_as_float32_does_to_int8_rounding(runs, lm_files, tmp_path):
    """The scoring graph (targets in, their log-probabilities out) quantized: every matrix product
    int8, the tail clusters' on the rows gathered for them; close to the float32 full graph."""
    scoring = export_onnx(rnnkit.load(runs["lm"]), tmp_path / "score.onnx", quantize="int8", scoring=True)
    assert scoring.scoring and scoring.quantized == "int8" and "scoring graph" in scoring.lines()[0]
    ops = {n.op_type for n in onnx.load(str(scoring.path)).graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and not ops & {"LSTM", "MatMul"}
    meta = read_metadata(onnx.load(str(scoring.path)))
    assert meta["graph"] == "scores" and meta["quantized"]["weights"] == "int8"
    fp32, int8 = OnnxModel(lm_files["fp32"].path, threads=1), OnnxModel(scoring.path, threads=1)
    rng = np.random.default_rng(1)
    tokens, targets = (rng.integers(0, len(fp32.meta["vocab"]["tokens"]), (20, 6)) for _ in range(2))
    exact, exact_state = fp32.score(tokens, targets)
    rounded, state = int8.score(tokens, targets)
    gap = np.abs(rounded - exact)
    assert 0 < gap.mean() < MEAN_GAP and gap.max() < 20 * MEAN_GAP
    assert all(np.abs(a - b).max() < 20 * MEAN_GAP for a, b in zip(state, exact_state))


def test_an_int8_tagger_tags_as_the_float32_one(runs, tmp_path):
    trained = rnnkit.load(runs["tag"])
    files = {
        k: export_onnx(trained, tmp_path / f"{k}.onnx", quantize=q)
        for k, q in [("fp32", None), ("int8", "int8")]
    }
    task = trained.task
    rng = np.random.default_rng(0)
    known = ["the", "cat", "dog", "sat", "ran", "on", "mat", ".", "zebra"]  # the last one unseen
    sentences = [Sentence(list(rng.choice(known, int(rng.integers(1, 12))))) for _ in range(40)]
    words, lengths, chars, _ = task.tensors(sentences, with_tags=False)
    feeds = (words.numpy(), lengths.numpy(), tuple(c.numpy() for c in chars))
    tags = {k: OnnxModel(f.path, threads=1).tag(*feeds) for k, f in files.items()}
    real = np.arange(words.shape[0])[:, None] < lengths.numpy()[None, :]
    assert (tags["int8"][~real] == -1).all()
    assert (tags["int8"][real] == tags["fp32"][real]).mean() > 0.95
    predicted = [
        [task.corpus.tags.tokens[t] for t in tags["fp32"][: len(s.words), n]] for n, s in enumerate(sentences)
    ]
    assert predicted == trained.tag(sentences)


def test_a_gru_stays_float32_in_an_int8_file_and_the_export_says_so():
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell="gru", embed_size=16, hidden_size=16), 40).eval()
    quantized = quantize_onnx(to_onnx(model))
    ops = {n.op_type for n in quantized.graph.node}
    assert "GRU" in ops and "MatMulInteger" in ops  # the recurrence float32, the softmax int8
    from rnnkit.export.quantize import int8_recurrences

    how = int8_recurrences(read_metadata(quantized)["recurrences"])["rnn"]
    assert how.endswith("float32 (ONNX Runtime quantizes no GRU or RNN operator)")


def test_an_unknown_quantization_a_wrong_task_or_a_foreign_file_is_refused_in_one_line(
    lm_files, runs, tmp_path
):
    with pytest.raises(
        RnnkitError, match=r"quantize must be one of int8 \(or none for float32\), got 'int4'"
    ):
        export_onnx(rnnkit.load(runs["lm"]), tmp_path / "model.onnx", quantize="int4")
    assert not (tmp_path / "model.onnx").exists()
    lm = OnnxModel(lm_files["int8"].path)
    with pytest.raises(RnnkitError, match="tag is for a 'tag' model; this file holds a 'lm' model"):
        lm.tag(np.zeros((1, 1), np.int64), np.ones(1, np.int64))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    for source, says in [
        (tmp_path / "junk.onnx", "ONNX Runtime cannot load it"),
        (tmp_path / "none.onnx", "cannot load"),
    ]:
        with pytest.raises(RnnkitError, match=says) as error:
            OnnxModel(source)
        assert "\n" not in str(error.value)
    foreign = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 17)],
        ir_version=8,
    )
    with pytest.raises(RnnkitError, match="not an ONNX model exported by rnnkit"):
        OnnxModel(foreign.SerializeToString())


# -- torch: rnnkit's own inference in int8 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "int8_recurrence"),
    [
        ({"cell": "lstm"}, True),
        ({"cell": "lstm", "learn_initial_state": True}, True),
        ({"cell": "gru"}, True),
        ({"cell": "gru", "reset_after": False}, False),
        ({"cell": "elman", "nonlinearity": "tanh"}, False),
    ],
    ids=["lstm", "lstm-learned-h0", "gru", "gru-cho", "elman"],
)
def test_a_torch_int8_tagger_reads_a_padded_batch_as_the_float32_one(options, int8_recurrence):
    torch.manual_seed(0)
    config = ModelConfig(
        embed_size=16, hidden_size=32, num_layers=2, bidirectional=True, char_embed=4, **options
    )
    tagger = build_tagger(config, 50, 20, 6).eval()
    int8 = quantize_model(tagger)
    assert isinstance(int8.rnn, Int8Recurrence) == int8_recurrence
    assert isinstance(int8.chars.rnn, Int8Recurrence)  # the characters' BiRNN is an LSTM
    assert isinstance(tagger.rnn, RNN) and type(tagger.proj) is torch.nn.Linear  # the original untouched
    assert type(int8.proj) is not torch.nn.Linear
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 4, 7, 1])
    words = torch.randint(1, 50, (9, 4), generator=g)
    chars = (torch.randint(1, 20, (5, 8), generator=g), torch.randint(1, 6, (8,), generator=g))
    chars += (torch.randint(8, (9, 4), generator=g),)
    with torch.no_grad():
        exact, rounded = tagger(words, lengths, chars), int8(words, lengths, chars)
        alone = int8(words[:4, 1:2], lengths[1:2], (chars[0], chars[1], chars[2][:4, 1:2]))
    real = torch.arange(9)[:, None] < lengths[None, :]
    gap = (rounded - exact).abs()[real]
    assert 0 < gap.mean() < MEAN_GAP and gap.max() < 20 * MEAN_GAP
    # the padding after a sentence is never read (packed, as on the float path): alone, the
    # sentence gets its scores back to int8 rounding (each batch quantizes its activations by
    # its own range); read with its padding, they would differ by ~0.05 here
    assert (alone[:, 0] - rounded[:4, 1]).abs().max() < 2 * MEAN_GAP


def test_a_torch_int8_language_model_scores_lines_and_streams_as_the_run_does(runs):
    trained = rnnkit.load(runs["lm"])
    lines = ["w1 w2 w3", "w4 w5 w0 w7 w11 w3", "w9"]
    exact = trained.score(lines)
    trained.model = trained.task.model = quantize_model(trained.model)
    rounded = trained.score(lines)
    for a, b in zip(exact, rounded):
        assert a["tokens"] == b["tokens"] and a["logprob"] != b["logprob"]
        assert abs(a["logprob"] - b["logprob"]) < MEAN_GAP * len(a["tokens"])
    tokens = torch.randint(12, (10, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole, _ = trained.model(tokens)
        first, carried = trained.model(tokens[:4])
        second, _ = trained.model(tokens[4:], carried)
        fresh, _ = trained.model(tokens[4:])
    # the state carries over (to int8 rounding: each call quantizes its activations by their range)
    assert (torch.cat([first, second]) - whole).abs().max() < 2 * MEAN_GAP
    assert (fresh - second).abs().max() > 10 * MEAN_GAP
    assert [t for t, _ in trained.next("w1 w2", k=3)]


def test_torch_int8_refuses_a_model_on_another_device():
    model = build_model(ModelConfig(cell="lstm", embed_size=4, hidden_size=4), 10).to("meta")
    with pytest.raises(RnnkitError, match="int8 inference runs on the CPU"):
        quantize_model(model)
