"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015).

Each of T steps carries two numbers: a value drawn from U(0, 1) and a marker that is 1 at
exactly two steps (one in the first half, one in the second) and 0 elsewhere. The target
is the sum of the two marked values. Predicting 1 always (the expected sum) scores a mean
squared error of Var(U + U') = 2/12 ≈ 0.167: the baseline to beat. The first marker can be
T steps back, so the task measures how far a network carries information.

``rnnkit experiment adding`` (:func:`experiment`, :func:`draw`): tanh Elman, IRNN, GRU and
LSTM at T = 50..400 against that baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.analysis import plots
from rnnkit.errors import RnnkitError
from rnnkit.experiments.common import TINY_STEPS, mse_flags, suffix
from rnnkit.registry import rnn
from rnnkit.training.clipping import clip_gradients

BASELINE = 1.0 / 6.0
"""The MSE of always predicting 1."""
FILES = ("adding_mse.png",)
"""What :func:`draw` writes."""

CELLS = {  # label: (cell, options, learning rate); Le et al. 2015 tuned each cell's rate
    "elman-tanh": ("elman", {"nonlinearity": "tanh"}, 1e-3),
    "elman-relu": ("elman", {"nonlinearity": "relu"}, 1e-4),
    "irnn": ("irnn", {}, 1e-4),
    "gru": ("gru", {}, 1e-3),
    "lstm": ("lstm", {}, 1e-3),
    # after the lecture (``--cells``): the gated cells' rate
    "lnlstm": ("lnlstm", {}, 1e-3),
    "mingru": ("mingru", {}, 1e-3),
    "minlstm": ("minlstm", {}, 1e-3),
    "slstm": ("slstm", {}, 1e-3),
}
LABELS = ("elman-tanh", "irnn", "gru", "lstm")
"""The cells run when ``--cells`` is not given (the lecture's comparison)."""
LENGTHS = {"tiny": (10, 20), "small": (50, 100), "full": (50, 100, 200, 400)}
"""The sequence lengths T of each scale when ``--lengths`` is not given."""


def adding_batch(T: int, batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Inputs (T, batch, 2), time-major, and targets (batch,)."""
    if T < 2:
        raise RnnkitError(f"the adding problem needs T >= 2, got {T}")
    values = torch.rand(T, batch, generator=generator)
    first = torch.randint(0, T // 2, (batch,), generator=generator)
    second = torch.randint(T // 2, T, (batch,), generator=generator)
    markers = torch.zeros(T, batch)
    columns = torch.arange(batch)
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    target = values[first, columns] + values[second, columns]
    return torch.stack([values, markers], -1), target


class Regressor(nn.Module):
    """A one-layer recurrent network and a linear read-out of its last hidden state."""

    def __init__(self, cell: str, hidden: int, **options) -> None:
        super().__init__()
        self.rnn = rnn(cell, 2, hidden, **options)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.rnn(x)
        return self.out(h[-1]).squeeze(-1)


@dataclass(frozen=True)
class Setup:
    hidden: int = 100  # Le et al. 2015
    batch: int = 32
    steps: int = 2000
    clip: float = 10.0
    eval_sequences: int = 1000


@dataclass
class Result:
    label: str
    T: int
    mse: float
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        """Le et al.'s bar: well below the baseline (here under a tenth of it)."""
        return self.mse < BASELINE / 10


def run(label: str, T: int, setup: Setup, seed: int, device: str | torch.device = "cpu") -> Result:
    """Train one cell at sequence length T with Adam (its rate from :data:`CELLS`) on ``device``, then test.

    The batches are drawn on the CPU (the same numbers on every device) and moved there.
    """
    cell, options, lr = CELLS[label]
    torch.manual_seed(seed)
    model = Regressor(cell, setup.hidden, **options).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    result = Result(label, T, float("nan"), 0.0)
    start = time.perf_counter()
    for step in range(setup.steps):
        x, y = (t.to(device) for t in adding_batch(T, setup.batch, generator))
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), setup.clip)
        optimizer.step()
        if step % max(1, setup.steps // 40) == 0 or step == setup.steps - 1:
            result.curve.append((step, loss.item()))
    result.seconds = time.perf_counter() - start
    test = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        x, y = (t.to(device) for t in adding_batch(T, setup.eval_sequences, test))
        result.mse = (model(x) - y).pow(2).mean().item()
    return result


def experiment(
    seed: int,
    scale: str,
    device: torch.device,
    *,
    cells: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
) -> dict:
    """The experiment at ``scale``: each cell (``cells``, default :data:`LABELS`) at each
    length (``lengths``, default the scale's), a table on stdout; returns the results."""
    lengths = tuple(lengths or LENGTHS[scale])
    steps = {"tiny": TINY_STEPS, "small": 1500, "full": 5000}[scale]
    setup = Setup(steps=steps, eval_sequences=100 if scale == "tiny" else 1000)
    labels = tuple(cells or LABELS)
    print(
        f"adding problem, seed {seed}, on {device}: {setup}; baseline MSE (always predict 1) {BASELINE:.3f}"
    )
    print(f"{'cell':12} {'T':>5} {'lr':>7} {'test MSE':>9} {'solved':>7} {'train s':>8}")
    rows, curves = [], {}
    for T in lengths:
        for label in labels:
            r = run(label, T, setup, seed, device)
            lr = CELLS[label][2]
            row = {"cell": label, "T": T, "lr": lr, "mse": r.mse, "solved": r.solved, "seconds": r.seconds}
            mse_flags([row], BASELINE)
            print(
                f"{label:12} {T:5d} {lr:7.0e} {r.mse:9.4f} {'yes' if r.solved else 'no':>7} {r.seconds:8.1f}"
                + suffix(row),
                flush=True,
            )
            rows.append(row)
            curves[f"{label} T={T}"] = r.curve
    return {"setup": setup.__dict__, "baseline": BASELINE, "rows": rows, "curves": curves}


def draw(out: Path, results: dict, caption: str) -> None:
    """Test MSE by sequence length, one line per cell, the baseline drawn across (:data:`FILES`)."""
    labels = dict.fromkeys(row["cell"] for row in results["rows"])
    plots.measured_curves(
        {
            label: (
                [row["T"] for row in results["rows"] if row["cell"] == label],
                [row["mse"] for row in results["rows"] if row["cell"] == label],
            )
            for label in labels
        },
        out / "adding_mse.png",
        "sequence length T",
        "test MSE",
        "The adding problem" + caption,
        log_y=True,
        hline=(results["baseline"], "always predict 1"),
    )
