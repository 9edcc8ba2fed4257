"""Generated tasks that need no files: the package's demo and tests run on these."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.errors import RnnkitError


def repeat_copy_batch(
    batch_size: int, seq_len: int, vocab_size: int, period: int, generator: torch.Generator | None = None
) -> Tensor:
    """Token sequences that repeat a random phrase: x_t = x_{t - period} for t >= period.

    After the first ``period`` tokens every next token is determined by the one
    ``period`` steps back, so a language model can only predict it by remembering:
    the smallest task where the lecture's long-range gradient matters.

    Returns:
        int64 tensor of shape (seq_len, batch_size), time-major.
    """
    if period < 1 or period >= seq_len:
        raise RnnkitError(f"period must be in [1, seq_len={seq_len}), got {period}")
    phrase = torch.randint(vocab_size, (period, batch_size), generator=generator)
    reps = -(-seq_len // period)
    return phrase.repeat(reps, 1)[:seq_len]
