"""Variable lengths: checking them, masking padded steps, reversing each sequence in place."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rnnkit.cells.base import State
from rnnkit.errors import RnnkitError


def check_lengths(
    lengths: Tensor | Sequence[int], seq_len: int, batch_size: int, device: torch.device
) -> Tensor:
    """Validate per-sequence lengths and return them as an int64 tensor on ``device``.

    Raises:
        RnnkitError: if ``lengths`` is not 1-D of size N, or any length is outside [1, L].
    """
    t = lengths if isinstance(lengths, Tensor) else torch.as_tensor(list(lengths))
    if t.dim() != 1 or t.numel() != batch_size:
        raise RnnkitError(
            f"lengths must be 1-D with one entry per sequence (N={batch_size}), got shape {tuple(t.shape)}"
        )
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise RnnkitError(f"lengths must hold integers, got dtype {t.dtype}")
    lo, hi = int(t.min()), int(t.max())
    if lo < 1 or hi > seq_len:
        raise RnnkitError(f"lengths must lie in [1, L={seq_len}], got min {lo} and max {hi}")
    return t.to(device=device, dtype=torch.long)


def step_mask(lengths: Tensor, seq_len: int) -> Tensor:
    """``mask[t, n, 0]`` is True where step t is a real token of sequence n: shape (L, N, 1)."""
    steps = torch.arange(seq_len, device=lengths.device)
    return (steps[:, None] < lengths[None, :]).unsqueeze(-1)


def flip_sequences(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse time in ``x`` of shape (L, N, ...), each sequence within its own length.

    Without lengths this is ``x.flip(0)``. With lengths, sequence n's first
    ``lengths[n]`` steps are reversed and its padding stays where it is, so a
    backward-direction layer starts at each sequence's own last token. The map is its
    own inverse.
    """
    if lengths is None:
        return x.flip(0)
    L = x.shape[0]
    t = torch.arange(L, device=x.device)[:, None]
    index = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    index = index.view(L, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)


def where_state(mask: Tensor, new: State, old: State) -> State:
    """Take ``new`` where ``mask`` is True and keep ``old`` elsewhere (padding freezes state)."""
    if isinstance(new, Tensor):
        return torch.where(mask, new, old)
    return type(new)(*(torch.where(mask, a, b) for a, b in zip(new, old)))
