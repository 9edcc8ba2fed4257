"""Issue 22, item 5: the gradient through time of minGRU/minLSTM in ``rnnkit diagnose``.

Their step Jacobian is diag(a_t) (a_t = 1 - z_t, or f'_t), so ||∂h_t/∂h_k|| is exactly the
largest unit's product of a_s. Oracles: autograd's Jacobian of h_t with respect to h_k
through the cell's reference steps, in float64; then the console script on a tiny trained
minGRU run, a fresh minLSTM's backward direction, and Elman/LSTM reports left as they were.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_toy_lm_corpus
from rnnkit.analysis import gradient_flow as gf
from rnnkit.analysis import plots
from rnnkit.cli.main import main
from rnnkit.config import ModelConfig
from rnnkit.models.config import build_model

SCRIPT = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin" / "rnnkit"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--model.hidden_size=8", "--model.embed_size=8", "--train.epochs=1", "--no-progress"]


def random_model(cell: str, seed: int):
    """A small random 2-layer bidirectional language model of ``cell`` and its input (L, N)."""
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, embed_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    model = build_model(config, 9)
    return model, torch.randint(0, 9, (10, 3), generator=torch.Generator().manual_seed(seed))


def autograd_chain(tr: gf.Trace, start: int, end: int) -> torch.Tensor:
    """∂h_end/∂h_start of sequence 0 by autograd through the cell's reference steps between
    them: start < end forward; a backward direction ran from start down to end < start."""
    cell = tr.model.rnn.standalone_cell(tr.index)
    order = range(start - 1, end - 1, -1) if tr.reverse else range(start + 1, end + 1)
    x = [tr.inputs[s][0].detach() for s in order]

    def steps(h: torch.Tensor) -> torch.Tensor:
        for x_s in x:
            h = cell(x_s, h)
        return h

    return torch.autograd.functional.jacobian(steps, tr.hidden[start][0].detach())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_product_of_factors_is_autograds_jacobian(cell, seed):
    model, tokens = random_model(cell, seed)
    for index in (0, 3):  # layer 0 forward, layer 1 backward
        tr = gf.trace(model, tokens, index)
        log_a = gf.log_decays(tr)
        assert log_a.dtype == torch.float64 and log_a.shape == (tr.steps, 3, 6)
        for k, d in ((0, 1), (1, 4), (2, 6)):
            J = autograd_chain(tr, k + d, k) if tr.reverse else autograd_chain(tr, k, k + d)
            window = log_a[k : k + d, 0] if tr.reverse else log_a[k + 1 : k + d + 1, 0]
            product = window.sum(0).exp()
            torch.testing.assert_close(J, torch.diag(product), rtol=1e-10, atol=1e-14)
            norm = torch.linalg.matrix_norm(J, ord=2).item()
            assert math.isclose(norm, product.max().item(), rel_tol=1e-10)
        exact = gf.diagonal_products(log_a[:, 0], tr.steps, tr.reverse)["product"]
        measured = gf.product_norms(gf.step_jacobians(tr), tr.steps, tr.reverse)
        np.testing.assert_allclose(exact, measured, rtol=1e-10, atol=0)


def test_other_cells_have_no_diagonal_factors():
    for cell in ("elman", "lstm", "gru", "lnlstm"):
        model, tokens = random_model(cell, 0)
        assert gf.log_decays(gf.trace(model, tokens, 0)) is None


def test_per_step_factor_is_the_geometric_mean_and_a_constant_gate_decays_geometrically():
    log_a = torch.log(torch.tensor([[0.5, 0.9]] * 6, dtype=torch.float64))
    found = gf.diagonal_products(log_a, 6)
    np.testing.assert_allclose(found["product"], 0.9 ** np.arange(7), rtol=1e-12)
    assert np.isnan(found["per_step"][0])
    np.testing.assert_allclose(found["per_step"][1:], 0.9, rtol=1e-12)
    summary = gf.decay_summary(log_a, 6)
    assert summary["slowest_unit"]["unit"] == 1 and math.isclose(summary["a_max"], 0.9)


@pytest.fixture(scope="module")
def mingru_run(tmp_path_factory) -> Path:
    """A minGRU language model trained for one epoch by the console script."""
    root = tmp_path_factory.mktemp("mingru")
    data = write_toy_lm_corpus(root, vocab=8, length=6, train=60, valid=10)
    run = root / "run"
    done = subprocess.run(
        [str(SCRIPT), "train", "--data", str(data), "--model.cell=mingru", "--out", str(run), *TINY],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return run


def check_decay(report: dict, a: str) -> None:
    """The report's exact figures: finite, within [0, 1], equal to the measured products."""
    decay = report["decay"]
    assert decay["a"] == a and decay["sequence"] == 0
    products = np.array(decay["product_by_distance"])
    assert len(products) == report["steps"] + 1 and products[0] == 1.0
    assert np.isfinite(products).all() and (products >= 0).all() and (products <= 1).all()
    per_step = decay["per_step_by_distance"]
    assert per_step[0] is None and all(0 <= p <= 1 for p in per_step[1:])
    assert 0 <= decay["a_mean"] <= decay["a_max"] <= 1
    assert 0 <= decay["slowest_unit"]["per_step"] <= decay["a_max"]
    measured = report["jacobian"]["product_norms_by_distance"]
    np.testing.assert_allclose(products, measured, rtol=1e-9)
    assert all(p <= decay["a_max"] ** d * (1 + 1e-12) for d, p in enumerate(products))


def test_diagnose_a_trained_mingru_run_through_the_console_script(mingru_run, tmp_path):
    out = tmp_path / "diagnose"
    args = [str(SCRIPT), "diagnose", str(mingru_run), "--length", "20", "--out", str(out)]
    done = subprocess.run([*args, "--what", "gradients,jacobians"], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "diagnose.json").read_text())
    check_decay(report, "1 - z_t")
    assert (out / "jacobian_products.png").stat().st_size > 500
    printed = done.stdout
    assert "step Jacobian diag(1 - z_t), so ||∂h_(k+d)/∂h_k|| = max over units of ∏ (1 - z_t)" in printed
    products = report["decay"]["product_by_distance"]
    assert f"exactly: d=1: {products[1]:.2e}, d=5: {products[5]:.2e}, d=10: {products[10]:.2e}" in printed
    assert "kept per step over d steps: d=1: " in printed and "1 - z_t: mean " in printed


def test_a_fresh_minlstms_backward_direction_and_its_plot(tmp_path, capsys, monkeypatch):
    drawn = {}

    def keep(fig, out):
        drawn[Path(out).name] = fig

    monkeypatch.setattr(plots, "save", keep)
    args = ["diagnose", "--cell", "minlstm", "--hidden", "6", "--layers", "2", "--bidirectional"]
    args += ["--direction", "1", "--length", "16", "--sequences", "2", "--out", str(tmp_path), "--json"]
    assert main([*args, "--what", "jacobians"]) == 0
    report = json.loads(capsys.readouterr().out)
    check_decay(report, "f'_t")
    lines = {line.get_label(): line for line in drawn["jacobian_products.png"].axes[0].get_lines()}
    exact = lines["exact: max over units of ∏ f'_t"]
    bound = lines[f"bound a_max^d, a_max = {report['decay']['a_max']:.3f}"]
    assert exact.get_linestyle() == "--" and bound.get_linestyle() == ":"
    np.testing.assert_allclose(exact.get_ydata(), report["decay"]["product_by_distance"], rtol=1e-12)


@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_elman_and_lstm_reports_have_no_decay(cell, tmp_path, capsys):
    args = ["diagnose", "--cell", cell, "--hidden", "6", "--length", "12", "--sequences", "2"]
    assert main([*args, "--out", str(tmp_path), "--what", "jacobians", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "decay" not in report and ("bound" in report) == (cell == "elman")
