"""``rnnkit demo``: a short, self-contained run on generated data."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

import rnnkit
from rnnkit.config import ModelConfig
from rnnkit.data.synthetic import repeat_copy_batch
from rnnkit.errors import RnnkitError
from rnnkit.models.config import build_model
from rnnkit.training.loop import pick_device

DEMO_CELLS = [
    ("elman (sigmoid)", "elman", {"nonlinearity": "sigmoid"}),
    ("irnn", "irnn", {}),
    ("gru", "gru", {}),
    ("lstm", "lstm", {}),
]


def parity_error(cell: str, options: dict, device: torch.device) -> float:
    """Largest difference between the fast and the reference path (output and every gradient)."""
    torch.manual_seed(0)
    m = rnnkit.rnn(
        cell, 6, 8, num_layers=2, bidirectional=True, dtype=torch.float64, device=device, **options
    )
    x = torch.randn(9, 4, 6, dtype=torch.float64, device=device)
    results = []
    for impl in ("reference", "auto"):
        m.impl = impl
        m.zero_grad()
        y, _ = m(x, lengths=[9, 7, 3, 1])
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=device).view_as(y)).sum().backward()
        results.append([y.detach()] + [p.grad.clone() for p in m.parameters()])
    return max((a - b).abs().max().item() for a, b in zip(*results))


def run_demo(steps: int = 300, seed: int = 0, device: str = "cpu") -> int:
    if steps < 1:
        raise RnnkitError(f"--steps must be at least 1, got {steps}")
    dev = pick_device(device)
    vocab, hidden, seq_len, period, batch = 12, 64, 32, 6, 32
    print(f"rnnkit {rnnkit.__version__} demo on {dev}: {steps} steps per cell, seed {seed}")
    print(f"task: language model on generated phrases of {period} tokens repeated (vocabulary {vocab});")
    print(f"      after the first {period} tokens each next token is fully predictable from memory.\n")
    print(f"{'cell':16} {'fast=ref (max err)':>18} {'ppl at start':>12} {'ppl at end':>10} {'tokens/s':>9}")
    for label, cell, options in DEMO_CELLS:
        err = parity_error(cell, options, dev)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        config = ModelConfig(cell=cell, embed_size=hidden, hidden_size=hidden, num_layers=1, **options)
        model = build_model(config, vocab).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        ppl_start = ppl = float("nan")
        start = time.perf_counter()
        for step in range(steps):
            tokens = repeat_copy_batch(batch, seq_len + 1, vocab, period, gen).to(dev)
            logp, _ = model.log_prob(tokens[:-1], tokens[1:])
            loss = -logp[period - 1 :].mean()  # only the predictable part: targets from `period` on
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # Mikolov's clipping
            opt.step()
            ppl = math.exp(loss.item())
            if step == 0:
                ppl_start = ppl
        rate = steps * batch * seq_len / (time.perf_counter() - start)
        print(f"{label:16} {err:18.1e} {ppl_start:12.2f} {ppl:10.2f} {rate:9.0f}", flush=True)
    print(
        "\nperplexity 1.0 means the model predicts every repeated token; "
        f"{vocab} is chance. The fast path is checked against the lecture's equations in float64."
    )
    return 0
