"""``rnnkit explore``'s numbers (issue 20) against independent oracles: ``rnnkit score`` and
``next``, a torch ``nn.LSTM`` twin with the run's weights, autograd of each E_t, and the
diagnostics' own ``gradient_matrix`` and ``elman_bound``; runs of every task, trained once."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import rnnkit
from conftest import CLI_ENV, write_toy_lm_corpus, write_toy_sst, write_toy_treebank
from rnnkit.analysis import gradient_flow as gf
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.explore import compute, snapshot, sweep
from rnnkit.explore.compute import Explorer

TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--train.threads=1"]
TINY += ["--train.optimizer=adam", "--train.lr=0.01", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-layer LSTM and a sigmoid Elman language model, a 2-layer bidirectional tagger, a
    classifier: trained once for the module."""
    root = tmp_path_factory.mktemp("explore")
    lm_data = write_toy_lm_corpus(root, vocab=8, length=6, train=60, valid=10)
    out = {}
    for name, extra in (
        ("lstm", ["--model.num_layers=2"]),
        ("elman", ["--model.cell=elman", "--model.nonlinearity=sigmoid"]),
    ):
        assert main(["train", "--data", str(lm_data), "--out", str(root / name), *TINY, *extra]) == 0
        out[name] = root / name
    bank = write_toy_treebank(root / "bank", train=30)
    tagger = ["--task=tag", "--model.num_layers=2", "--model.bidirectional=true"]
    assert main(["train", "--data", str(bank), "--out", str(root / "tag"), *TINY, *tagger]) == 0
    sst = write_toy_sst(root / "sst")
    classify = ["--task=classify", "--data.classes=2"]
    assert main(["train", "--data", str(sst), "--out", str(root / "cls"), *TINY, *classify]) == 0
    out["tag"], out["cls"] = root / "tag", root / "cls"
    return out


@pytest.fixture(scope="module")
def explorer(runs):
    return Explorer([runs["lstm"], runs["elman"], runs["tag"], runs["cls"]])


LSTM, ELMAN, TAG, CLS = range(4)


def test_surprisal_is_what_rnnkit_score_says_and_top_k_what_next_says(explorer, runs):
    text = "w1 w2 w3 w9 w4"  # w9 is not in the vocabulary
    found = explorer.analyze(LSTM, text, k=3)
    scored = subprocess.run(
        [sys.executable, "-m", "rnnkit", "score", str(runs["lstm"]), "-", "--json"],
        input=text + "\n", capture_output=True, text=True, env=CLI_ENV, timeout=300,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    line = json.loads(scored.stdout.splitlines()[0])
    assert found["tokens"] == ["w1", "w2", "w3", "w9", "w4"] and found["oov"] == [
        False,
        False,
        False,
        True,
        False,
    ]
    assert found["unknown"] == ["w9"]
    # score also scores the line's end; explore reads the text as typed, so it stops before
    np.testing.assert_allclose(found["surprisal_bits"], line["surprisal_bits"][:-1], rtol=1e-6)
    bits = found["surprisal_bits"]
    assert found["ppl"] == pytest.approx(2 ** (sum(bits) / len(bits)), rel=1e-6)
    trained = rnnkit.load(runs["lstm"])
    for t in (0, 2, 4):
        expected = trained.next(" ".join(text.split()[: t + 1]), k=3)
        assert [w for w, _ in found["topk"][t]] == [w for w, _ in expected]
        np.testing.assert_allclose([p for _, p in found["topk"][t]], [p for _, p in expected], rtol=1e-5)


def _twin(trained) -> tuple[torch.nn.LSTM, torch.Tensor]:
    """An ``nn.LSTM`` holding the run's recurrent weights (torch names), and the embedding."""
    rnn = trained.model.rnn
    twin = torch.nn.LSTM(8, 8, num_layers=2).double()
    twin.load_state_dict({k: v.double() for k, v in rnn.state_dict().items()}, strict=True)
    return twin, trained.model.embedding.weight.detach().double()


def test_inside_values_are_an_nn_lstm_twins_states_and_gates(explorer, runs):
    text = "w1 w2 w3 w4 w5 w6"
    trained = rnnkit.load(runs["lstm"])
    twin, embedding = _twin(trained)
    vocab = trained.vocab
    ids = torch.tensor([vocab.index("<eos>")] + [vocab.index(w) for w in text.split()])
    x = embedding[ids][:, None]
    h1, _ = twin(x)
    # layer 0 by hand from the twin's weights, step by step: its gates, c and h
    W_ih, W_hh, b = twin.weight_ih_l0, twin.weight_hh_l0, twin.bias_ih_l0 + twin.bias_hh_l0
    h, c, seen = torch.zeros(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64), []
    with torch.no_grad():
        for x_t in x[:, 0]:
            i, f, g, o = (W_ih @ x_t + W_hh @ h + b).chunk(4)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
            seen.append({"i": i, "f": f, "o": o, "c": c, "h": h})
    for q in ("h", "c", "i", "f", "o"):
        found = explorer.inside(LSTM, text, 0, 0, q)
        expected = torch.stack([s[q] for s in seen[1:]]).numpy()  # the step reading the start is not shown
        np.testing.assert_allclose(found["values"], expected, atol=1e-6)
    top = explorer.inside(LSTM, text, 1, 0, "h")
    np.testing.assert_allclose(top["values"], h1[1:, 0].detach().numpy(), atol=1e-6)
    assert top["range"] == [-1.0, 1.0] and explorer.inside(LSTM, text, 0, 0, "f")["range"] == [0.0, 1.0]
    c_range = explorer.inside(LSTM, text, 0, 0, "c")["range"]
    assert c_range[1] == pytest.approx(float(torch.stack([s["c"] for s in seen[1:]]).abs().max()))
    assert explorer.inside(LSTM, text, 1, 0, "f")["label"] == "forget gate f_t"


@pytest.mark.parametrize(
    "run,layers,directions", [(LSTM, 2, 1), (ELMAN, 1, 1), (TAG, 2, 2)], ids=["lstm", "elman", "tagger"]
)
def test_the_gradient_map_is_autograd_of_each_loss(explorer, run, layers, directions):
    text = "the cat sat on the mat ." if run == TAG else "w1 w2 w3 w4 w5 w6 w7"
    reading = explorer.reading(run, text)
    tokens, loss, offset = reading.subject()
    model = reading.trained.model
    for layer in range(layers):
        for direction in range(directions):
            found = explorer.gradient(run, text, layer, direction)
            G = np.array([[np.nan if v is None else v for v in row] for row in found["map"]])
            tr = gf.trace(model, tokens, layer * directions + direction, loss)
            oracle = gf.gradient_matrix(tr)[offset:, offset:][: len(G), : len(G)]
            reach = ~np.isnan(G)
            np.testing.assert_allclose(G[reach], oracle[reach], rtol=1e-9, atol=1e-300)
            for t, k in ((3, 1), (3, 3), (5, 0)):  # autograd of E_t alone, at h_k
                if reach[t, k]:
                    (grad,) = torch.autograd.grad(
                        tr.losses[t + offset].sum(), tr.hidden[k + offset], retain_graph=True
                    )
                    assert G[t, k] == pytest.approx(grad.norm().item(), rel=1e-9)
            assert found["direction"] == ("backward" if direction else "forward")
    if directions == 1:  # one way: E_t reaches no later step, and the last token has no E shown
        G = explorer.gradient(run, text, 0, 0)["map"]
        assert all(v is None for t, row in enumerate(G) for k, v in enumerate(row) if k > t)
    top = explorer.gradient(run, text, layers - 1, directions - 1)["map"]
    if directions == 2:  # the top backward direction reaches the later steps only
        assert all(v is None for t, row in enumerate(top) for k, v in enumerate(row) if k < t)


def test_more_threads_give_the_same_answers_side_by_side(runs, monkeypatch):
    """With threads=3 the trained model and the probe compute at once, and the gradient map's rows
    are swept in two spans by two threads: every answer as with one thread, asked concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    one = Explorer([runs["lstm"], runs["tag"]])
    two = Explorer([runs["lstm"], runs["tag"]], threads=3)
    assert two.lock is not two.probe_lock and one.lock is one.probe_lock
    texts = {0: "w1 w2 w3 w4 w5 w6 w7 w8 w9", 1: "the cat sat on the mat ."}
    questions = [
        (run, kind, layer, direction)
        for run, directions in ((0, 1), (1, 2))
        for kind in ("analyze", "inside", "gradient")
        for layer in (0, 1) if run == 0 or layer == 0
        for direction in range(directions)
    ]  # fmt: skip

    def ask(explorer, question):
        run, kind, layer, direction = question
        if kind == "analyze":
            return explorer.analyze(run, texts[run])
        if kind == "inside":
            return explorer.inside(run, texts[run], layer, direction, "c")
        return explorer.gradient(run, texts[run], layer, direction)

    split, sweep_once = [], sweep.gradient_matrix

    def spied(recording, index, workers=1, carry=torch.float64, first=0):
        split.append(workers)
        return sweep_once(recording, index, workers, carry, first)

    monkeypatch.setattr(sweep, "gradient_matrix", spied)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: ask(two, q), questions))
    assert set(split) == {2}  # the probe's two threads swept every map
    for question, found in zip(questions, together):
        expected = ask(one, question)
        if question[1] != "gradient":
            assert found == expected, question
            continue
        G, E = ([[np.nan if v is None else v for v in row] for row in d["map"]] for d in (found, expected))
        np.testing.assert_allclose(G, E, rtol=1e-12, atol=1e-300, equal_nan=True)


def test_a_float32_explorer_says_so_and_draws_the_float64_map_to_float32_precision(explorer, runs):
    """``rnnkit explore``'s default (float32, rescaled rows) against this module's float64 explorer;
    a classifier's one loss is one autograd pass in float64 whatever the setting."""
    fast = Explorer([runs["lstm"], runs["tag"], runs["cls"]], precision=torch.float32)
    for run, exact_run, text, layers in (
        (0, LSTM, "w1 w2 w3 w4 w5 w6 w7 w8", 2),
        (1, TAG, "the cat sat on the mat", 2),
    ):
        for layer in range(layers):
            found, expected = fast.gradient(run, text, layer, 0), explorer.gradient(exact_run, text, layer, 0)
            assert found["precision"] == "float32" and expected["precision"] == "float64"
            G, E = (
                np.array([[np.nan if v is None else v for v in row] for row in d["map"]])
                for d in (found, expected)
            )
            assert not np.array_equal(G, E, equal_nan=True)
            np.testing.assert_allclose(G, E, rtol=1e-3, atol=0, equal_nan=True)
    assert fast.gradient(2, "the film great", 0, 0)["precision"] == "float64"


def test_inside_rounds_to_the_colour_ranges_digits_only_when_asked(explorer):
    text = "w1 w2 w3 w4 w5 w6"
    for quantity in ("h", "c", "f"):
        exact = explorer.inside(LSTM, text, 0, 0, quantity)
        shown = explorer.inside(LSTM, text, 0, 0, quantity, digits=4)
        lo, hi = exact["range"]
        step = 10.0 ** (math.floor(math.log10(max(abs(lo), abs(hi)))) - 3)
        assert np.abs(np.array(shown["values"]) - np.array(exact["values"])).max() <= step / 2 + 1e-15
        values = [v for row in shown["values"] for v in row]
        assert all(round(v / step) * step == pytest.approx(v, abs=1e-12) for v in values)
        assert shown["values"] != exact["values"] and {**shown, "values": 0} == {**exact, "values": 0}
        assert len(json.dumps(shown)) < 0.6 * len(json.dumps(exact))


def test_the_elman_bound_is_the_diagnostics_bound(explorer):
    text = "w1 w2 w3 w4 w5 w6"
    found = explorer.gradient(ELMAN, text, 0, 0)
    reading = explorer.reading(ELMAN, text)
    tokens, loss, _ = reading.subject()
    bound = gf.elman_bound(gf.trace(reading.trained.model, tokens, 0, loss))
    assert found["beta"] == pytest.approx(bound)
    np.testing.assert_allclose(found["bound"], [bound["product"] ** d for d in range(6)], rtol=1e-12)
    assert explorer.gradient(LSTM, text, 1, 0)["bound"] is None
    curve = found["by_distance"]
    G = np.array([[np.nan if v is None else v for v in row] for row in found["map"]])
    assert curve[1] == pytest.approx(np.nanmean([G[t, t - 1] for t in range(1, 6)]))


def test_tags_and_classes_are_the_runs_own(explorer, runs):
    sentence = "the cat sat on the mat ."
    tagged = explorer.analyze(TAG, sentence)
    assert tagged["tags"] == rnnkit.load(runs["tag"]).tag([sentence])[0]
    assert all(0 < p <= 1 for p in tagged["tag_probs"])
    assert [p for _, p in tagged["tag_topk"][0]] == sorted(
        (p for _, p in tagged["tag_topk"][0]), reverse=True
    )
    found = explorer.analyze(CLS, "the film great")
    trained = rnnkit.load(runs["cls"])
    assert found["probs"] == pytest.approx(trained.classify(["the film great"])[0]["probs"])
    assert found["over_time"][0] == pytest.approx(trained.classify(["the"])[0]["probs"])
    assert found["over_time"][-1] == pytest.approx(found["probs"])
    assert found["classes"] == trained.classes
    clf = explorer.gradient(CLS, "the film great", 0, 0)["map"]  # one loss: at the last word
    assert [i for i, row in enumerate(clf) if any(v is not None for v in row)] == [2]


def test_units_rank_by_inside_minus_around_and_show_where_they_fire(explorer):
    text = "w1 w2 w3 w4 w5 w6 w7"
    values = np.array(explorer.inside(LSTM, text, 1, 0, "h")["values"])
    found = explorer.units(LSTM, text, 1, 0, "h", 2, 4, threshold=0.0)
    expected = values[2:4].mean(0) - values[[0, 1, 4, 5]].mean(0)
    assert [u["unit"] for u in found["units"]] == list(np.argsort(-expected, kind="stable"))
    assert found["units"][0]["score"] == pytest.approx(expected.max())
    assert found["elsewhere"], "the run's validation text is reachable here"
    for unit in found["elsewhere"]:
        for snippet in unit["snippets"]:
            assert len(snippet["tokens"]) == len(snippet["on"]) and any(snippet["on"])
    with pytest.raises(RnnkitError, match="start, end"):
        explorer.units(LSTM, text, 1, 0, "h", 5, 3)


def test_limits_and_bad_input_are_one_line_messages(explorer):
    long = " ".join(["w1"] * 1500)
    found = explorer.analyze(LSTM, long)
    assert len(found["tokens"]) == 1000 and "text cut to 1000 tokens" in found["notes"]
    huge = explorer.analyze(TAG, "the " * 30_000)  # 120k characters
    assert any("100000 characters" in n for n in huge["notes"]) and len(huge["tokens"]) == 1000
    gradient = explorer.gradient(LSTM, long, 1, 0)
    assert len(gradient["map"]) == compute.GRADIENT_TOKENS and gradient["notes"]
    shown = explorer.analyze(TAG, "the \x1b[31mcat\x00 sat")["tokens"]
    assert shown == ["the", "\\x1b[31mcat\\x00", "sat"]
    for bad, message in (
        (lambda: explorer.analyze(LSTM, "  \n "), "text: empty"),
        (lambda: explorer.analyze(7, "w1"), "run: no run 7"),
        (lambda: explorer.inside(LSTM, "w1 w2", 2, 0, "h"), "layer: must be in"),
        (lambda: explorer.inside(LSTM, "w1 w2", 0, 1, "h"), "direction: must be in"),
        (lambda: explorer.inside(ELMAN, "w1 w2", 0, 0, "c"), "quantity: one of h"),
        (lambda: explorer.analyze(LSTM, "w1", k=0), "k: must be in"),
    ):
        with pytest.raises(RnnkitError, match=message) as err:
            bad()
        assert "\n" not in str(err.value)


def test_a_run_still_training_shows_its_last_checkpoint(runs, tmp_path):
    import os
    import shutil
    import socket

    run = tmp_path / "busy"
    shutil.copytree(runs["elman"], run)
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}
    (run / ".lock").write_text(json.dumps(lock))
    busy = Explorer([run])
    assert busy.describe()["runs"][0]["training"] and busy.runs[0].which == "last"
    assert busy.notes == ["busy: still training; showing its last checkpoint"]
    assert busy.analyze(0, "w1 w2")["tokens"] == ["w1", "w2"]
    shutil.rmtree(run / "last")
    fresh = Explorer([run])
    with pytest.raises(RnnkitError, match="no checkpoint saved yet"):
        fresh.analyze(0, "w1 w2")


def test_a_snapshot_holds_every_view_as_json(runs):
    shot = snapshot([runs["lstm"], runs["tag"]], ["w1 w2 w3", ""])
    text = json.dumps(shot, allow_nan=False)  # every number finite or null
    assert json.loads(text)["runs"][1]["directions"] == 2
    entry = shot["results"]["0|0"]
    assert set(entry["inside"]) == {f"{layer}/0/{q}" for layer in (0, 1) for q in "hcifo"}
    assert set(entry["gradient"]) == {"0/0", "1/0"} and "1/0/h/0-1" in entry["units"]
    assert shot["results"]["0|1"] == {"error": "text: empty; type some text"}
    assert set(shot["results"]["1|0"]["gradient"]) == {"0/0", "0/1", "1/0", "1/1"}
    assert shot["training"]["0"]["metric"] == "ppl" and shot["training"]["1"]["metric"] == "accuracy"
    assert math.isfinite(shot["training"]["0"]["valid"][0])


@pytest.mark.parametrize("cell", ["lnlstm", "mingru", "minlstm"])
def test_the_new_cells_gates_are_the_cells_own(cell, tmp_path):
    """explore shows the gates of the cells after the lecture: each equals the cell's
    ``gate_values`` stepped here over the run's own embedding, in float64."""
    data = write_toy_lm_corpus(tmp_path, vocab=8, length=6, train=30, valid=6)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY, f"--model.cell={cell}"]) == 0
    text = "w1 w2 w3 w4 w5"
    explorer = Explorer([run])
    quantities = explorer.describe()["runs"][0]["quantities"]
    shown_for = {"lnlstm": ["h", "c", "i", "f", "o"], "mingru": ["h", "z"], "minlstm": ["h", "f", "i"]}
    assert quantities == shown_for[cell]
    trained = rnnkit.load(run)
    model, vocab = trained.model.double(), trained.vocab
    ids = torch.tensor([vocab.index("<eos>")] + [vocab.index(w) for w in text.split()])
    step = model.rnn.standalone_cell(0)
    names = {"i": "input", "f": "forget", "o": "output", "z": "update"}
    with torch.no_grad():
        x = model.embedding(ids).unsqueeze(1)  # (T, 1, E)
        state, want = step.initial_state(1), {q: [] for q in names}
        for x_t in x:
            for name, gate in step.gate_values(x_t, state).items():
                short = next((k for k, v in names.items() if v == name), None)
                if short is not None:
                    want[short].append(gate[0])
            state = step(x_t, state)
    for quantity in quantities[1:]:
        if quantity == "c":
            continue
        shown = np.array(explorer.inside(0, text, 0, 0, quantity)["values"])
        expected = torch.stack(want[quantity][1:]).numpy()  # the step reading the start is not shown
        np.testing.assert_allclose(shown, expected, atol=1e-12)
