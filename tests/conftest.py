"""Shared helpers for the tests: cell configurations, torch oracles, gradient collection."""

from __future__ import annotations

import functools
import http.server
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N workers share the cores, a thread each
    torch.set_num_threads(1)

# (id, rnnkit cell name, options, torch module class and options computing the same function, or None)
CELL_CASES = [
    ("elman-sigmoid", "elman", {"nonlinearity": "sigmoid"}, None),
    ("elman-tanh", "elman", {"nonlinearity": "tanh"}, (nn.RNN, {"nonlinearity": "tanh"})),
    ("elman-relu", "elman", {"nonlinearity": "relu"}, (nn.RNN, {"nonlinearity": "relu"})),
    ("irnn", "irnn", {"input_std": 0.1, "scale": 0.5}, (nn.RNN, {"nonlinearity": "relu"})),
    ("gru", "gru", {}, (nn.GRU, {})),
    ("gru-cho", "gru", {"reset_after": False}, None),
    ("lstm", "lstm", {}, (nn.LSTM, {})),
]
CELL_IDS = [c[0] for c in CELL_CASES]

F64 = {"rtol": 1e-8, "atol": 1e-10}
F32 = {"rtol": 1e-5, "atol": 1e-6}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def state_tensors(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def run_and_grad(module: nn.Module, x: torch.Tensor, lengths=None, state=None, torch_module: bool = False):
    """Forward, a loss touching every output and final state, backward.

    Returns (output, final state tensors, gradients of input, state and every parameter).
    The loss is a fixed linear functional weighting each element differently, so that
    no gradient is trivially uniform.
    """
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    state_in = None
    if state is not None:
        state_in = tuple(s.detach().clone().requires_grad_(True) for s in state_tensors(state))
        state_arg = state_in if len(state_in) == 2 else state_in[0]
    else:
        state_arg = None
    if torch_module and lengths is not None:
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), enforce_sorted=False)
        out, final = module(packed, state_arg)
        out = nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])[0]
    elif torch_module:
        out, final = module(x, state_arg)
    else:
        out, final = module(x, state_arg, lengths=lengths)
    finals = state_tensors(final)
    loss = (out * weights_like(out)).sum() + sum((f * weights_like(f).flip(-1)).sum() for f in finals)
    loss.backward()
    grads = (
        [x.grad] + ([s.grad for s in state_in] if state_in else []) + [p.grad for p in module.parameters()]
    )
    return out.detach(), [f.detach() for f in finals], grads


def weights_like(t: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1.0, 1.5, t.numel(), dtype=t.dtype, device=t.device).view_as(t)


def assert_all_close(actual, expected, **tol) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, msg=lambda m, i=i: f"item {i}: {m}", **tol)


def build(
    cell: str,
    options: dict,
    input_size: int,
    hidden: int,
    layers: int,
    bidirectional: bool,
    dtype,
    seed=0,
    **kw,
):
    torch.manual_seed(seed)
    return rnnkit.rnn(
        cell, input_size, hidden, num_layers=layers, bidirectional=bidirectional, dtype=dtype, **options, **kw
    )


def torch_twin(module: rnnkit.RNN, spec, dtype) -> nn.Module:
    """The torch module computing the same function, with ``module``'s weights copied."""
    cls, options = spec
    twin = cls(
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        bias=module.cell.bias,
        **options,
    ).to(dtype)
    twin.load_state_dict(module.state_dict(), strict=True)
    return twin


def write_toy_lm_corpus(root, vocab: int = 12, length: int = 8, train: int = 120, valid: int = 20):
    """``train.txt``/``valid.txt`` of random lines of ``length`` words ``w0``..``w{vocab-1}`` (seed 0)."""
    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(vocab)]
    for split, n in (("train", train), ("valid", valid)):
        lines = [
            " ".join(words[int(i)] for i in torch.randint(vocab, (length,), generator=g)) for _ in range(n)
        ]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_toy_sst(root: Path) -> Path:
    """SST-style trees ``{train,dev,test}.txt`` of 3 words: the last (good/great or bad/awful)
    decides the label (4 or 0), so a tiny classifier learns it (seed 0)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 40), ("dev", 10), ("test", 10)):
        trees = []
        for _ in range(n):
            label = rng.choice([0, 4])
            word = rng.choice(["good", "great"] if label else ["bad", "awful"])
            trees.append(f"({label} (2 the) ({label} (2 film) ({label} {word})))")
        (root / f"{split}.txt").write_text("\n".join(trees) + "\n")
    return root


CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_rnnkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command line (``python -m rnnkit ARGS``), one thread, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, env=CLI_ENV, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """``proc`` failed as a bad input should: exit 2, one stderr line holding ``words``, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def write_toy_treebank(root, train: int = 60):
    """A CoNLL-U treebank ``t-ud-{train,dev,test}.conllu``: 3-8 random words, each tagged by its word."""
    root.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    words = ["the", "cat", "dog", "sat", "ran", "on", "mat", "."]
    tags = ["DET", "NOUN", "NOUN", "VERB", "VERB", "ADP", "NOUN", "PUNCT"]
    for split, n in (("train", train), ("dev", 10), ("test", 10)):
        blocks = []
        for _ in range(n):
            ids = torch.randint(
                len(words), (int(torch.randint(3, 9, (), generator=g)),), generator=g
            ).tolist()
            rows = [f"{j}\t{words[i]}\t_\t{tags[i]}\t_\t_\t0\t_\t_\t_" for j, i in enumerate(ids, 1)]
            blocks.append("\n".join(rows) + "\n\n")
        (root / f"t-ud-{split}.conllu").write_text("".join(blocks))
    return root


def train_tiny_runs(root: Path, tiny: list[str], tag: list[str] = (), classify: list[str] = ()) -> dict:
    """A tiny language model, tagger and classifier trained in this process: ``root/lm-run``,
    ``tag-run`` and ``classify-run`` (by task), each with the settings ``tiny`` and its own."""
    from rnnkit.cli.main import main

    (root / "lm").mkdir()
    corpora = {
        "lm": (write_toy_lm_corpus(root / "lm"), ["--train.bptt=8"]),
        "tag": (write_toy_treebank(root / "treebank"), ["--task=tag", *tag]),
        "classify": (write_toy_sst(root / "sst"), ["--task=classify", "--data.classes=2", *classify]),
    }
    runs = {}
    for task, (data, own) in corpora.items():
        runs[task] = root / f"{task}-run"
        assert main(["train", "--data", str(data), "--out", str(runs[task]), *own, *tiny]) == 0
    return runs


def last_weights(run) -> dict[str, torch.Tensor]:
    """The weights of a run's ``last`` checkpoint, read as plain tensors."""
    import json

    import safetensors.torch

    record = json.loads((run / "last" / "checkpoint.json").read_text())
    return safetensors.torch.load_file(str(run / "last" / record["weights"]))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """HTTP servers on 127.0.0.1 serving directories: ``serve(dir)`` -> base URL; shut down after."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.timeout = 5
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure :func:`rnnkit.analysis.plots.save` writes, as ``(file name, figure)``."""
    from rnnkit.analysis import plots

    saved = []
    original = plots.save

    def save(fig, out):
        saved.append((Path(out).name, fig))
        original(fig, out)

    monkeypatch.setattr(plots, "save", save)
    return saved
