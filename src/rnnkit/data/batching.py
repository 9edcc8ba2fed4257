"""Token streams for truncated BPTT: columns, windows, and the state carried between them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from rnnkit.errors import RnnkitError


def batchify(stream: Tensor, batch_size: int) -> Tensor:
    """Cut a 1-D token stream into ``batch_size`` columns, time-major ``(T, N)``.

    Column j holds the j-th of N contiguous stretches of the stream, so each column
    is read in order and the hidden state of column j at the end of one window is the
    right start for the next window::

        stream: a b c d e f g h i j k l m        N = 3, T = 13 // 3 = 4
                                                 (the last 13 - 12 = 1 token is dropped)
        columns:  a e i
                  b f j
                  c g k
                  d h l

    Raises:
        RnnkitError: if the stream has fewer than ``2 * batch_size`` tokens (no window).
    """
    if batch_size < 1:
        raise RnnkitError(f"batch_size must be at least 1, got {batch_size}")
    T = stream.numel() // batch_size
    if T < 2:
        raise RnnkitError(f"a stream of {stream.numel()} tokens is too short for {batch_size} columns")
    return stream[: T * batch_size].view(batch_size, T).t().contiguous()


def bptt_windows(
    columns: Tensor,
    bptt: int,
    variable: bool = False,
    generator: torch.Generator | None = None,
    start: int = 0,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Consecutive windows ``(position, inputs, targets)`` over ``columns`` (T, N).

    ``inputs = columns[i : i + l]`` and ``targets = columns[i + 1 : i + 1 + l]``: every
    token but the first of each column is predicted exactly once. ``variable`` draws
    each window's length as AWD-LSTM does (Merity et al. 2018): ``bptt`` with
    probability 0.95 else ``bptt / 2``, plus N(0, 5²) noise, at least 5 steps; the trainer
    scales the learning rate by ``l / bptt``. ``start`` resumes at a window boundary.
    """
    if bptt < 1:
        raise RnnkitError(f"bptt must be at least 1, got {bptt}")
    T = columns.shape[0]
    i = start
    while i < T - 1:
        length = _draw_length(bptt, generator) if variable else bptt
        length = min(length, T - 1 - i)
        yield i, columns[i : i + length], columns[i + 1 : i + 1 + length]
        i += length


def _draw_length(bptt: int, generator: torch.Generator | None) -> int:
    base = bptt if torch.rand((), generator=generator).item() < 0.95 else bptt / 2
    return max(5, int(base + 5 * torch.randn((), generator=generator).item()))


def num_windows(T: int, bptt: int) -> int:
    """How many fixed-length windows :func:`bptt_windows` yields over T steps."""
    return math.ceil((T - 1) / bptt)


def stream_windows(
    column: Callable[[int], Iterator[int]], total: int, batch_size: int, bptt: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """The windows of :func:`batchify` + :func:`bptt_windows`, read from token iterators.

    ``column(start)`` iterates over the stream's ids from position ``start`` on;
    ``total`` is the stream's length. Column j reads ``T = total // batch_size`` ids from
    ``j * T``: the same columns and windows as :func:`batchify` on the whole stream,
    holding only ``batch_size * (bptt + 1)`` ids at a time.
    """
    if batch_size < 1 or bptt < 1:
        raise RnnkitError(f"batch_size and bptt must be at least 1, got {batch_size} and {bptt}")
    T = total // batch_size
    if T < 2:
        raise RnnkitError(f"a stream of {total} tokens is too short for {batch_size} columns")
    readers = [column(j * T) for j in range(batch_size)]

    def take(n: int) -> Tensor:
        rows = [[next(r) for _ in range(n)] for r in readers]
        return torch.tensor(rows, dtype=torch.long).t()

    previous, i = take(1), 0
    while i < T - 1:
        length = min(bptt, T - 1 - i)
        fresh = take(length)
        yield torch.cat([previous, fresh[:-1]]), fresh
        previous, i = fresh[-1:], i + length
