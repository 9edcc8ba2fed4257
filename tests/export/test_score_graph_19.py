"""A language model's ONNX scoring graph (issue 19, item 3): targets in, their log-probabilities out.

``export_onnx(..., scoring=True)`` writes a graph that computes log P of the given targets only
(an adaptive softmax's tail clusters only where a target is in them), as
``LanguageModel.log_prob`` does, instead of the whole (L, N, V) distribution. The oracle is
the PyTorch model on its reference path scoring each sequence of a padded batch alone, with
no padding: every real position within 1e-5 in float32, 0 past each end, and the final state
after each sequence's last token.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnkit
from conftest import assert_one_line_error, run_rnnkit, write_toy_lm_corpus
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.errors import RnnkitError
from rnnkit.export import OnnxModel, export_onnx, quantize_onnx, read_metadata, to_onnx
from rnnkit.models.config import build_classifier, build_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

ATOL = 1e-5
VOCAB = 40
CUTOFFS = [10, 25]
"""Adaptive softmax: ids 0-9 in the head, two tail clusters (10-24, 25-39)."""
HEADS = {
    "adaptive": {"head": "adaptive", "cutoffs": CUTOFFS, "div_value": 2.0},
    "full": {"head": "full"},
}
SHAPES = [  # cell, options, bidirectional, layers, the model's own extras
    ("lstm", {}, False, 2, {}),
    ("gru", {}, True, 1, {}),
    ("elman", {"nonlinearity": "tanh"}, False, 3, {"learn_initial_state": True}),
    ("lstm", {}, False, 1, {"projection_size": 6}),
]
SHAPE_IDS = ["lstm-2", "gru-bi", "elman-3-learned-h0", "lstm-projection"]


def session(proto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def language_model(head: str, cell: str, options: dict, bidirectional: bool, layers: int, extra: dict):
    """A small language model on the reference path, its weights less tame than at init."""
    torch.manual_seed(0)
    settings = {"embed_size": 8, "hidden_size": 12, **options, **HEADS[head], **extra}
    config = ModelConfig(cell=cell, num_layers=layers, bidirectional=bidirectional, **settings)
    model = build_model(config, VOCAB)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.rnn.impl = "reference"
    return model.eval()


def padded(g: torch.Generator, L: int, N: int, top: int = VOCAB) -> tuple[torch.Tensor, ...]:
    """tokens and targets (L, N) below ``top``, and lengths (N,) in [1, L] (one of them L); the
    padding after each end holds other random ids, which must change nothing."""
    lengths = torch.randint(1, L + 1, (N,), generator=g)
    lengths[0] = L
    return torch.randint(VOCAB, (L, N), generator=g), torch.randint(top, (L, N), generator=g), lengths


def feeds(tokens, targets, lengths, state) -> dict[str, np.ndarray]:
    out = {"tokens": tokens.numpy(), "targets": targets.numpy(), "lengths": lengths.numpy()}
    return out | dict(zip(("h0", "c0"), (s.numpy() for s in state)))


def each_alone(model, tokens, targets, lengths, state) -> tuple[list[np.ndarray], list[tuple]]:
    """Each sequence scored by ``model.log_prob`` on its own, without its padding."""
    scores, finals = [], []
    with torch.no_grad():
        for n, length in enumerate(lengths.tolist()):
            mine = tuple(s[:, n : n + 1] for s in state)
            logp, final = model.log_prob(
                tokens[:length, n : n + 1], targets[:length, n : n + 1], mine if len(mine) == 2 else mine[0]
            )
            scores.append(logp[:, 0].numpy())
            finals.append(tuple(f[:, 0].numpy() for f in (final if isinstance(final, tuple) else (final,))))
    return scores, finals


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize(("cell", "options", "bidirectional", "layers", "extra"), SHAPES, ids=SHAPE_IDS)
def test_the_scoring_graph_gives_log_prob_of_each_target_and_the_final_state(
    head, cell, options, bidirectional, layers, extra
):
    model = language_model(head, cell, options, bidirectional, layers, extra)
    run = session(to_onnx(model, scoring=True))
    g = torch.Generator().manual_seed(layers + 7 * bidirectional)
    D = model.rnn.num_layers * model.rnn.num_directions
    # targets of every cluster; of the head alone (no row for the tails); one step; all length 1
    for L, N, top in ((9, 6, VOCAB), (7, 4, CUTOFFS[0]), (1, 3, VOCAB), (5, 1, VOCAB)):
        tokens, targets, lengths = padded(g, L, N, top)
        state = tuple(
            0.5 * torch.randn(D, N, 12, generator=g) for _ in range(1 + model.rnn.cell.has_cell_state)
        )
        scores, *finals = run.run(None, feeds(tokens, targets, lengths, state))
        expected, expected_finals = each_alone(model, tokens, targets, lengths, state)
        for n, length in enumerate(lengths.tolist()):
            np.testing.assert_allclose(scores[:length, n], expected[n], rtol=0, atol=ATOL)
            assert (scores[length:, n] == 0).all()
            for got, want in zip(finals, expected_finals[n], strict=True):
                np.testing.assert_allclose(got[:, n], want, rtol=0, atol=ATOL)


def test_the_scoring_graph_forms_no_distribution_and_gathers_rows_for_each_tail_cluster():
    model = language_model("adaptive", "lstm", {}, False, 1, {})
    proto = to_onnx(model, scoring=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("NonZero") == 2 and ops.count("ScatterElements") == 2 and "Concat" not in ops[-40:]
    outputs = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output
    }
    assert outputs == {"target_log_probs": ["seq", "batch"], "hN": [1, "batch", 12], "cN": [1, "batch", 12]}
    info = read_metadata(proto)
    assert info["graph"] == "scores" and "target_log_probs (L, N)" in info["signature"]
    assert set(info["inputs"]) == {"tokens", "targets", "lengths", "h0", "c0"}
    assert "graph" not in read_metadata(to_onnx(model))  # the default file is as it was


def test_an_int8_scoring_graph_stays_close_to_float32_with_empty_clusters_too():
    model = language_model("adaptive", "lstm", {}, False, 2, {})
    proto = to_onnx(model, scoring=True)
    int8 = quantize_onnx(proto)
    ops = {n.op_type for n in int8.graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and not ops & {"LSTM", "MatMul"}
    fp32_run, int8_run = session(proto), session(int8)
    g = torch.Generator().manual_seed(5)
    for top in (VOCAB, CUTOFFS[0]):  # every cluster; the head alone (the tails' rows empty)
        tokens, targets, lengths = padded(g, 12, 8, top)
        state = tuple(torch.zeros(2, 1, 12) for _ in range(2))
        exact = fp32_run.run(None, feeds(tokens, targets, lengths, state))[0]
        rounded = int8_run.run(None, feeds(tokens, targets, lengths, state))[0]
        assert np.isfinite(rounded).all() and np.abs(rounded - exact).mean() < 0.02


def test_scoring_is_for_language_models_only():
    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(embed_size=4, hidden_size=4), 10, 2)
    with pytest.raises(RnnkitError, match="scoring graph is for language models, not a Classifier"):
        to_onnx(classifier, scoring=True)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny trained language model."""
    root = tmp_path_factory.mktemp("score-graph")
    corpus = write_toy_lm_corpus(root)
    tiny = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
    tiny += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress", "--train.bptt=8"]
    assert main(["train", "--data", str(corpus), "--out", str(root / "run"), *tiny]) == 0
    return root / "run"


def test_an_exported_scoring_file_scores_as_the_full_file_and_streams(lm_run, tmp_path):
    trained = rnnkit.load(lm_run)
    full = export_onnx(trained, tmp_path / "full.onnx")
    scoring = export_onnx(trained, tmp_path / "score.onnx", scoring=True)
    assert scoring.scoring and not full.scoring and "scoring graph" in scoring.lines()[0]
    assert read_metadata(onnx.load(str(scoring.path)))["vocab"] == trained.vocab.to_json()
    full_model, score_model = OnnxModel(full.path, threads=1), OnnxModel(scoring.path, threads=1)
    assert score_model.scoring and not full_model.scoring
    rng = np.random.default_rng(0)
    tokens, targets = (rng.integers(0, len(trained.vocab), (10, 3)) for _ in range(2))
    expected, expected_state = full_model.score(tokens, targets)
    got, state = score_model.score(tokens, targets)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    first, middle = score_model.score(tokens[:4], targets[:4])  # in two pieces, the state carried
    second, last = score_model.score(tokens[4:], targets[4:], middle)
    np.testing.assert_allclose(np.concatenate([first, second]), expected, rtol=0, atol=ATOL)
    for a, b, c in zip(state, expected_state, last, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)
        np.testing.assert_allclose(c, b, rtol=0, atol=ATOL)
    with pytest.raises(RnnkitError, match="this file is its scoring graph"):
        score_model.log_probs(tokens)
    with pytest.raises(RnnkitError, match="lengths need a scoring graph"):
        full_model.score(tokens, targets, lengths=np.full(3, 10))


def test_the_export_command_writes_a_scoring_graph_for_onnx_only(lm_run, tmp_path):
    out = tmp_path / "score.onnx"
    proc = run_rnnkit("export", str(lm_run), "--format", "onnx", "--scoring", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert read_metadata(onnx.load(str(out)))["graph"] == "scores"
    folder = run_rnnkit("export", str(lm_run), "--scoring", "--out", str(tmp_path / "folder"))
    assert_one_line_error(folder, "--scoring is for --format onnx")
    assert not (tmp_path / "folder").exists()
