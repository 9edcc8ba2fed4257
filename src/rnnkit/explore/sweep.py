r"""One float64 forward pass per text for every view, and the whole map ||∂E_t/∂h_k|| in one sweep back.

A :class:`Probe` is a run's float64 reference twin (:func:`rnnkit.analysis.gradient_flow.probe`),
made once per loaded model. :meth:`Probe.record` runs a text through it once, recording every
cell call of every layer-direction (input, previous state, new state) and the per-step losses:
the values inside each layer, the gates and the gradient maps are all read from that one
:class:`Recording` (:meth:`Recording.trace` is the diagnostics' :class:`~rnnkit.analysis.gradient_flow.Trace`
of one layer-direction).

:func:`rnnkit.analysis.gradient_flow.gradient_matrix` runs one backward pass per loss E_t,
each through the whole graph (the output layer's included): T passes, too slow for a page
that redraws as the user types. Where each E_t reads the top layer's output y_t alone (a
language model's next-token loss, a tagger's per-word loss), the same numbers come from
one sweep backwards through the steps, carrying all T rows at once:

.. math::
    \delta^{(t)} h_k = [k = t]\,\frac{\partial E_t}{\partial y_t}
        + \delta^{(t)} s_{k+1} \frac{\partial s_{k+1}}{\partial h_k}
        + \delta^{(t)} x^{\ell+1}_k \ \text{(from the layer above)}

each step's vector-Jacobian product from :mod:`rnnkit.explore.steps`, for the rows whose
E_t has reached the step (a forward direction's later losses have not). The tests hold it
to ``gradient_matrix``.

As the user types, a language model's edited text is recorded from where it first differs
from a text read before (:meth:`Probe.extend`), and its map sweeps only the rows from there
(:meth:`Recording.gradient_map`); the live map carries float32 rows kept in range by powers of
two (:class:`Scaled`).
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.analysis import gradient_flow as gf
from rnnkit.cells.base import RecurrentCell
from rnnkit.explore.steps import Call, Steps, steps

ROW_BYTES = 64 << 20
"""Rows are carried in groups whose gradients on one layer's outputs hold at most this many bytes."""


class Probe:
    """A run's float64 reference twin, made once, and standalone copies of its cells.

    With ``graph=False`` a recording keeps no autograd graph of the recurrent layers (the
    sweep needs none: only ∂E_t/∂y_t, taken on the output layer's graph); a classifier's one
    loss is differentiated through the whole graph (``graph=True``).
    """

    def __init__(self, model: nn.Module, graph: bool = True) -> None:
        self.model = gf.probe(model)
        self.cells: dict[int, RecurrentCell] = {}
        self.graph = graph
        if not graph:  # nothing is differentiated through the recurrent layers: no graph for them
            self.model.requires_grad_(False)

    def cell(self, index: int) -> RecurrentCell:
        """Layer-direction ``index``'s cell holding its weights (kept)."""
        if index not in self.cells:
            self.cells[index] = self.model.rnn.standalone_cell(index)
        return self.cells[index]

    def record(self, tokens: Tensor, loss: gf.Loss) -> Recording:
        """``tokens`` (L, N) through the twin once, every cell call of every layer-direction recorded."""
        if tokens.dim() != 2 or tokens.shape[0] < 2:
            raise ValueError(f"tokens must be (L, N) with L >= 2, got shape {tuple(tokens.shape)}")
        twin, recording = self.model, Recording(self, leaf_output=not self.graph)
        rnn = twin.rnn
        handles = [rnn.register_forward_hook(recording.output)]
        handles += [cell.register_forward_hook(recording.call(i)) for i, cell in enumerate(rnn.cells)]
        try:
            losses = loss(twin, tokens.to(next(twin.parameters()).device))
        finally:
            for handle in handles:
                handle.remove()
        recording.tokens = tokens
        losses, recording.loss_steps = losses if isinstance(losses, tuple) else (losses, [])
        y = recording.y
        if not recording.loss_steps and y is not None and losses.shape[0] == y.shape[0]:
            # one loss per step, read at y_t: the sweep needs only ∂E_t/∂y_t, and nothing else
            # needs the output layer's graph (which the next backward pass frees)
            (recording.direct,) = torch.autograd.grad(losses[:, 0].sum(), y)
            losses = losses.detach()
        recording.losses = losses
        return recording

    def extend(self, base: Recording, tokens: Tensor) -> Recording:
        """A language model's recording of ``tokens`` (L, 1) that reuses ``base``, a recording of
        another text, up to the first token that differs: a one-way model's step t reads the
        positions up to t alone, so base's cell calls, outputs and losses stand before it (E_t
        also reads token t + 1: the last shared position's loss is computed again), and the rest
        runs on from base's states there. The rows of the gradient maps before it are base's
        too (:meth:`Recording.gradient_map`). As :meth:`record` would give, to the last bit of
        float64 but for the output layer's products over fewer rows."""
        if base.tokens is None or self.graph or self.model.rnn.num_directions != 1:
            return self.record(tokens, gf.lm_loss)
        old, n = base.tokens, min(len(base.tokens), len(tokens))
        differ = (old[:n, 0] != tokens[:n, 0]).nonzero()
        first = int(differ[0]) if len(differ) else n
        start = min(first - 1, len(tokens) - 2)  # the first position run again
        if start < 1:
            return self.record(tokens, gf.lm_loss)
        rnn = self.model.rnn
        state = rnn._join_state([base.calls[i][start - 1][2] for i in range(len(rnn.cells))])

        def loss(twin: nn.Module, rest: Tensor) -> Tensor:
            return -twin.log_prob(rest[:-1], rest[1:], state)[0]

        rest = self.record(tokens[start:], loss)
        assert base.y is not None and rest.y is not None and base.losses is not None
        assert base.direct is not None and rest.direct is not None and rest.losses is not None
        merged = Recording(self, leaf_output=True)
        merged.tokens = tokens
        merged.calls = {i: base.calls[i][:start] + calls for i, calls in rest.calls.items()}
        merged.y = torch.cat([base.y[:start].detach(), rest.y.detach()])
        merged.losses = torch.cat([base.losses[:start], rest.losses])
        merged.direct = torch.cat([base.direct[:start], rest.direct])
        merged.previous = (base, start)
        base.previous = None  # no chain of recordings kept alive
        return merged


class Recording:
    """Every cell call of one forward pass of a probe (``calls`` by layer-direction, in the order
    run), the recurrent network's output y (L, N, H·D) and the per-step losses."""

    def __init__(self, probe: Probe, leaf_output: bool = False) -> None:
        self.probe, self.leaf_output = probe, leaf_output
        self.calls: dict[int, list[Call]] = {}
        self.y: Tensor | None = None
        self.losses: Tensor | None = None
        self.direct: Tensor | None = None
        """∂(Σ_t E_t)/∂y (L, N, H·D) where each E_t reads y_t alone; None for other losses."""
        self.loss_steps: list[int] = []
        self.tokens: Tensor | None = None
        """The input (L, N) it recorded."""
        self.previous: tuple[Recording, int] | None = None
        """(the recording this one extends, the first position it ran again): see :meth:`Probe.extend`."""
        self.maps: dict[tuple[int, torch.dtype], np.ndarray] = {}
        self._traces: dict[int, gf.Trace] = {}
        self._steps: dict[tuple[int, torch.dtype], Steps] = {}

    def output(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not self.leaf_output:
            self.y = output[0]
            return None
        self.y = output[0].detach().requires_grad_()  # the output layer's graph starts here
        return (self.y, *output[1:])

    def call(self, index: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.calls.setdefault(index, []).append((args[0], args[1], output))

        return hook

    def steps(self, index: int, carry: torch.dtype = torch.float64) -> Steps:
        """Layer-direction ``index``'s backward steps carrying ``carry`` (kept)."""
        if (index, carry) not in self._steps:
            self._steps[index, carry] = steps(self.probe.cell(index), self.calls[index], carry)
        return self._steps[index, carry]

    def gradient_map(self, index: int, workers: int = 1, carry: torch.dtype = torch.float64) -> np.ndarray:
        """:func:`gradient_matrix` of layer-direction ``index`` (kept); where this recording extends
        another whose map is known, that map's rows before the first position run again are
        copied (E_t of those rows, and every step they pass through, are the same) and only
        the rest are swept."""
        key = (index, carry)
        if key not in self.maps:
            first, known = 0, None
            if self.previous is not None and key in self.previous[0].maps:
                known, first = self.previous[0].maps[key], self.previous[1]
            G = gradient_matrix(self, index, workers, carry, first)
            if known is not None:
                G[:first, :first] = known[:first, :first]
            self.maps[key] = G
        return self.maps[key]

    def trace(self, index: int) -> gf.Trace:
        """Layer-direction ``index`` as :func:`rnnkit.analysis.gradient_flow.trace` records it (kept)."""
        if index not in self._traces:
            assert self.losses is not None
            calls, at = self.calls[index], list(self.loss_steps)
            if index % self.probe.model.rnn.num_directions == 1:  # the backward direction ran from the end
                calls = calls[::-1]
                at = [len(calls) - 1 - t for t in at]
            inputs, previous, states = ([c[j] for c in calls] for j in range(3))
            self._traces[index] = gf.Trace(self.probe.model, index, inputs, previous, states, self.losses, at)
        return self._traces[index]


def gradient_matrix(
    recording: Recording, index: int, workers: int = 1, carry: torch.dtype = torch.float64, first: int = 0
) -> np.ndarray:
    """G[t, k] = ||∂E_t/∂h_k|| (sequence 0) for every loss row t and step k of layer-direction
    ``index``, as :func:`rnnkit.analysis.gradient_flow.gradient_matrix` gives it, for losses E_t
    that read the top output y_t alone (one loss per step).

    The rows are carried in ``carry``: float64 (the default) gives the diagnostics' numbers; the
    explorer's live map carries float32, about 1.6 times faster, each row rescaled by a power of
    two once its norm drifts out of [2^-40, 2^40] (:class:`Scaled`, :data:`DRIFT`), so a gradient
    that vanishes to 1e-70 is 1e-70 and not a float32 zero: the relative error stays that of
    float32 arithmetic (~1e-6; the tests hold every entry to 1e-3 and most to 1e-5), whatever
    the magnitude.

    The rows are independent: with ``workers`` > 1 they are split into that many spans of about
    equal work, swept side by side by as many threads (torch releases the GIL in its kernels),
    so a machine's second core shortens the map's wait instead of idling. With ``first``, only
    the rows from ``first`` on are swept (the others are zero).
    """
    y, g = recording.y, recording.direct
    assert y is not None and g is not None, "one loss per step, read at y_t"
    L, width = y.shape[0], y.shape[-1]
    rows_at_once = max(1, ROW_BYTES // (L * width * carry.itemsize))
    spans = [
        range(at, min(first + stop, at + rows_at_once))
        for start, stop in _balanced(_row_work(recording, index, L)[first:], workers)
        for at in range(first + start, first + stop, rows_at_once)
    ]
    G = np.zeros((L, L))

    def fill(rows: range) -> None:
        G[rows.start : rows.stop] = _rows(recording, index, Diagonal(g[:, 0], rows, carry), carry)

    if workers <= 1 or len(spans) == 1:
        for rows in spans:
            fill(rows)
        return G
    _prepare(recording, index, carry)  # the steps each thread reads, made once before they start
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(fill, rows) for rows in spans]:
            done.result()
    return G


def _row_work(recording: Recording, index: int, L: int) -> np.ndarray:
    """About how many steps each row t is carried through: a forward direction carries E_t from
    t back to 0, a backward one from t on to the end, a layer above the observed one both ways."""
    rnn = recording.probe.model.rnn
    D = rnn.num_directions
    layer, direction = divmod(index, D)
    t = np.arange(L)
    if layer == rnn.num_layers - 1:
        return (L - t) if direction == 1 else (t + 1)
    return (t + 1) + (L - t) * (D - 1)


def _balanced(work: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous spans [start, stop) of the rows, ``parts`` of them at most, of about equal ``work``."""
    L = len(work)
    parts = max(1, min(parts, L))
    cuts = np.searchsorted(np.cumsum(work), np.sum(work) * np.arange(1, parts) / parts, side="right")
    bounds = sorted({0, *(int(c) for c in cuts), L})
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _prepare(recording: Recording, index: int, carry: torch.dtype) -> None:
    """Every layer-direction's backward steps that a sweep down to ``index`` reads (kept)."""
    rnn = recording.probe.model.rnn
    D = rnn.num_directions
    for at in [index, *range((index // D + 1) * D, rnn.num_layers * D)]:
        recording.steps(at, carry)


ZERO = -(1 << 40)
"""The exponent of a row of zeros: any row it is added to outweighs it."""


class Scaled:
    """Rows of gradients as float mantissas ``m`` (one tensor per state field) and one power-of-two
    exponent per row ``e`` (int64): row r is ``m[r] * 2**e[r]``, its largest |mantissa| in
    [0.5, 1) once normalised (:meth:`normalise`). Scaling by a power of two is exact, so a float64 carry
    gives the numbers it gives unscaled; a float32 carry keeps float32's relative precision
    where the values themselves would underflow it (a sigmoid Elman's 0.25^d) or overflow it.
    The bookkeeping is numpy on the tensors' own memory: a torch call on rows this small costs
    more than the arithmetic."""

    def __init__(self, m: list[Tensor], e: np.ndarray) -> None:
        self.m, self.e = m, e

    @classmethod
    def zeros(cls, fields: int, rows: int, width: int, dtype: torch.dtype) -> Scaled:
        return cls([torch.zeros((rows, width), dtype=dtype) for _ in range(fields)], np.full(rows, ZERO))

    def normalise(self) -> Scaled:
        """Each row rescaled (in place) so that its largest |mantissa| is in [0.5, 1); a row of
        zeros gets the exponent :data:`ZERO`."""
        m = [t.numpy() for t in self.m]
        largest = np.abs(m[0]).max(-1)
        for a in m[1:]:
            np.maximum(largest, np.abs(a).max(-1), out=largest)
        nonzero = (largest > 0) & np.isfinite(largest)
        shift = np.frexp(np.where(nonzero, largest, 1.0))[1]
        np.maximum(shift, -120, out=shift)  # a denormal largest: 2**-shift stays finite
        scale = _pow2(-shift, m[0])
        for a in m:
            a *= scale
        self.e = np.where(nonzero, self.e + shift, ZERO)
        return self

    def add(self, row: slice, other: Scaled) -> None:
        """``other``'s rows added (in place) to the rows ``row`` (its fields to the first of
        these; every field rescaled to the exponents of the sums)."""
        mine = [t.numpy() for t in self.m]
        if (self.e[row] == ZERO).all() and len(other.m) == 1:  # rows reached here: zeros so far
            mine[0][row] = other.m[0].numpy()
            self.e[row] = _exponents(other.e, [other.m[0].numpy()])
            return
        own = _exponents(self.e[row], [a[row] for a in mine])
        theirs = _exponents(other.e, [t.numpy() for t in other.m])
        e = np.maximum(own, theirs)
        for i, a in enumerate(mine):
            a[row] *= _pow2(own - e, a)
            if i < len(other.m):
                a[row] += other.m[i].numpy() * _pow2(theirs - e, a)
        self.e[row] = e


def _exponents(e: np.ndarray, m: list[np.ndarray]) -> np.ndarray:
    """``e`` where a row has a nonzero mantissa in some field, :data:`ZERO` where it is all zeros
    (its exponent, left from before it vanished, must not outweigh the other term of a sum)."""
    nonzero = np.any([np.any(a != 0, -1) for a in m], 0)
    return np.where(nonzero, e, ZERO)


ONE = {np.dtype(np.float32): np.ones(1, np.float32), np.dtype(np.float64): np.ones(1, np.float64)}


def _pow2(k: np.ndarray, like: np.ndarray) -> np.ndarray:
    """2**k (k <= 127) as a column in ``like``'s dtype: exact (ldexp), 0 below its range."""
    return np.ldexp(ONE[like.dtype], k)[..., None]


class Diagonal:
    """The rows' gradients on the top layer's outputs: row r's E_t reads y_t alone (t = ``rows[r]``),
    so its gradient there is ∂E_t/∂y_t (``g[t]``) and zero at every other position."""

    def __init__(self, g: Tensor, rows: range, carry: torch.dtype) -> None:
        self.g, self.rows, self.carry = g, rows, carry
        self.support = torch.zeros((len(rows), g.shape[0]), dtype=torch.bool)
        self.support[torch.arange(len(rows)), torch.tensor(rows)] = True

    def at(self, position: int, lo: int, hi: int, columns: slice) -> tuple[slice, Scaled] | None:
        """The rows among [lo, hi) with a gradient at ``position`` (the output's ``columns``):
        where they are (counted from lo) and their values; None: none has."""
        r = position - self.rows.start
        if not lo <= r < hi:
            return None
        g = self.g[position, columns].double().cpu().numpy()
        largest = float(np.abs(g).max())
        e = math.frexp(largest)[1] if largest > 0 and math.isfinite(largest) else 0
        m = torch.from_numpy(np.ldexp(g, -e)[None]).to(self.carry)  # exact: a power of two
        return slice(r - lo, r - lo + 1), Scaled([m], np.array([e if largest > 0 else ZERO]))


class Dense:
    """The rows' gradients on a layer's outputs at every position (R, L, W) as mantissas and
    exponents (R, L), nonzero where ``support`` (R, L) says."""

    def __init__(self, gradients: Tensor, exponents: np.ndarray, support: Tensor) -> None:
        self.gradients, self.exponents, self.support = gradients, exponents, support

    def at(self, position: int, lo: int, hi: int, columns: slice) -> tuple[slice, Scaled] | None:
        return slice(None), Scaled(
            [self.gradients[lo:hi, position, columns]], self.exponents[lo:hi, position]
        )

    def plus(self, other: Dense) -> Dense:
        a, b = self.gradients.numpy(), other.gradients.numpy()
        ea, eb = _exponents(self.exponents, [a]), _exponents(other.exponents, [b])
        e = np.maximum(ea, eb)
        both = a * _pow2(ea - e, a) + b * _pow2(eb - e, b)
        return Dense(torch.from_numpy(both), e, self.support | other.support)


def _rows(recording: Recording, index: int, direct: Diagonal | Dense, carry: torch.dtype) -> np.ndarray:
    """Norms (R, L) of the rows whose gradients on the top layer's outputs are ``direct``, swept
    down the layers to layer-direction ``index``."""
    rnn = recording.probe.model.rnn
    D = rnn.num_directions
    observed_layer, observed_direction = divmod(index, D)
    norms = np.zeros(tuple(direct.support.shape))
    for layer in range(rnn.num_layers - 1, observed_layer - 1, -1):
        below: Dense | None = None
        for direction in range(D):
            if layer == observed_layer and direction != observed_direction:
                continue
            at = layer * D + direction
            H = recording.probe.cell(at).hidden_size
            columns = slice(direction * H, (direction + 1) * H)
            want_input = layer > observed_layer
            found, into = _sweep(recording.steps(at, carry), direct, columns, direction == 1, want_input)
            if layer == observed_layer:
                norms = found
            if into is not None:
                below = into if below is None else below.plus(into)
        direct = below if below is not None else direct
    return norms


def _sweep(
    back: Steps, direct: Diagonal | Dense, columns: slice, reverse: bool, want_input: bool
) -> tuple[np.ndarray, Dense | None]:
    """One direction of one layer, backwards through the order it ran: the norm of each row's
    total gradient on h at every position (R, L) and, with ``want_input``, the gradients on
    the layer's input at every position.

    A row carries zeros until its E_t reaches the step (the later losses of a forward
    direction): each step is taken for the span of rows reached so far alone. The rows are
    carried :class:`Scaled`, renormalised after every step.
    """
    R, L = direct.support.shape
    positions = list(range(L)) if reverse else list(range(L - 1, -1, -1))  # the sweep's order
    reached = direct.support[:, positions].cummax(1).values.numpy()  # (R, L) in the sweep's order
    lengths = np.zeros((R, L))  # each row's norm at each position: these times 2**exponents
    exponents = np.full((R, L), ZERO)
    into: Tensor | None = None
    support = torch.zeros((R, L), dtype=torch.bool)
    carried: Scaled | None = None  # the rows' gradients on the state the next step received
    lo = hi = 0
    for s, position in enumerate(positions):
        rows = np.flatnonzero(reached[:, s])
        if not len(rows):
            continue
        lo, hi, before = int(rows[0]), int(rows[-1]) + 1, (lo, hi)
        if carried is None:
            carried = Scaled.zeros(back.state_fields, hi - lo, columns.stop - columns.start, back.dtype)
        elif (lo, hi) != before:  # rows reached here: nothing carried for them yet
            carried = _widen(carried, before, (lo, hi))
        entering = direct.at(position, lo, hi, columns)
        if entering is not None:
            carried.add(*entering)
        length = lengths[lo:hi, position] = carried.m[0].norm(dim=-1).numpy()
        exponents[lo:hi, position] = carried.e
        if L - 1 - s == 0 and not want_input:
            break
        dx, found = back.back(L - 1 - s, carried.m, want_input)
        if dx is not None:
            if into is None:
                into = torch.zeros((R, L, dx.shape[-1]), dtype=dx.dtype, device=dx.device)
            into[lo:hi, position] = dx
            support[lo:hi, position] = True
        carried = Scaled(found, carried.e)
        if _drifted(length):  # a rescale costs more than a step: only where the values drift far
            carried.normalise()
    norms = np.ldexp(lengths, exponents)
    return norms, None if into is None else Dense(into, exponents, support)


DRIFT = 2.0**40
"""Rows are rescaled once a row's norm leaves [1/DRIFT, DRIFT]: a float32 row then has 2**86
of its range left on either side (more than a step of any cell takes: one that shrank a
gradient by 1e-26 at once would lose it to zero), a float64 row far more."""


def _drifted(lengths: np.ndarray) -> bool:
    nonzero = lengths[lengths > 0]
    return bool(nonzero.size) and not (nonzero.min() >= 1 / DRIFT and nonzero.max() <= DRIFT)


def _widen(rows: Scaled, was: tuple[int, int], now: tuple[int, int]) -> Scaled:
    """``rows`` of the span ``was`` within the wider span ``now``, zeros in the rows added."""
    (a, b), (lo, hi) = was, now
    m = [torch.cat([t.new_zeros((a - lo, t.shape[1])), t, t.new_zeros((hi - b, t.shape[1]))]) for t in rows.m]
    return Scaled(m, np.concatenate([np.full(a - lo, ZERO), rows.e, np.full(hi - b, ZERO)]))
