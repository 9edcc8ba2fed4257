"""The recurrence of the min cells (issue 22): the log-space parallel scan and the in-place loop,
exact in float64, bounded in float32.

:func:`rnnkit.layers.scan.linear_scan` and :func:`~rnnkit.layers.scan.loop_scan` against the
step-by-step recurrence under autograd (:func:`~rnnkit.layers.scan.sequential_scan`), their
hand-written backwards against finite differences (``gradcheck``), chunked against
unchunked, and float32 against float64 up to L = 4096.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.cells import MinGRUCell
from rnnkit.cells.mingru import g
from rnnkit.layers.scan import CHUNK, MinGRULoop, linear_scan, loop_scan, sequential_scan

EPS32 = 2.0**-24


def _coefficients(L: int, N: int, H: int, signed: bool, seed: int = 0, k_scale: float = 3.0):
    """A min cell's (log a, b, h0): gates σ(k) with k ~ N(0, k_scale²), from nearly open to nearly
    shut; b = z·g(v) > 0 (the default candidate) or z·v of either sign (``candidate="linear"``)."""
    gen = torch.Generator().manual_seed(seed)
    k = k_scale * torch.randn(L, N, H, generator=gen, dtype=torch.float64)
    v = torch.randn(L, N, H, generator=gen, dtype=torch.float64)
    h0 = torch.randn(N, H, generator=gen, dtype=torch.float64)
    return -F.softplus(k), torch.sigmoid(k) * (v if signed else g(v)), h0


@pytest.mark.parametrize("signed", [False, True], ids=["positive-b", "signed-b"])
@pytest.mark.parametrize("chunk", [1, 3, 7, CHUNK])
def test_scan_equals_the_sequential_recurrence_in_float64(chunk, signed):
    log_a, b, h0 = _coefficients(23, 3, 5, signed)
    b[4:9, 1] = 0.0  # b = 0, a = 1: a padded stretch, the state frozen
    log_a[4:9, 1] = 0.0
    expected = sequential_scan(log_a, b, h0)
    torch.testing.assert_close(linear_scan(log_a, b, h0, chunk), expected, rtol=1e-12, atol=1e-13)
    assert torch.equal(expected[8, 1], expected[3, 1])


@pytest.mark.parametrize("signed", [False, True], ids=["positive-b", "signed-b"])
def test_chunked_scan_equals_unchunked_with_gradients(signed):
    log_a, b, h0 = _coefficients(50, 2, 4, signed, seed=1)
    w = torch.randn(50, 2, 4, dtype=torch.float64)
    results = []
    for chunk in (50, 16, 5, 1):
        inputs = [t.clone().requires_grad_(True) for t in (log_a, b, h0)]
        h = linear_scan(*inputs, chunk)
        results.append([h.detach(), *torch.autograd.grad((h * w).sum(), inputs)])
    for other in results[1:]:
        for u, v in zip(other, results[0]):
            torch.testing.assert_close(u, v, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("signed", [False, True], ids=["positive-b", "signed-b"])
@pytest.mark.parametrize("chunk", [2, 64])
def test_gradcheck_scan(chunk, signed):
    log_a, b, h0 = _coefficients(9, 2, 3, signed, seed=2)
    b[6:, 0], log_a[6:, 0] = 0.0, 0.0  # padding: a = 1, b = 0
    inputs = tuple(t.requires_grad_(True) for t in (log_a, b, h0))
    assert torch.autograd.gradcheck(lambda la, bb, h: linear_scan(la, bb, h, chunk), inputs)


@pytest.mark.parametrize("signed", [False, True], ids=["positive-b", "signed-b"])
def test_gradcheck_loop(signed):
    log_a, b, h0 = _coefficients(9, 2, 3, signed, seed=2)
    b[6:, 0], log_a[6:, 0] = 0.0, 0.0
    inputs = tuple(t.requires_grad_(True) for t in (log_a, b, h0))
    assert torch.autograd.gradcheck(loop_scan, inputs)


def test_scan_and_loop_gradients_equal_autograd_through_the_steps():
    log_a, b, h0 = _coefficients(40, 3, 6, signed=True, seed=3)
    w = torch.randn(40, 3, 6, dtype=torch.float64)
    results = []
    for scan in (sequential_scan, lambda *t: linear_scan(*t, 16), loop_scan):
        inputs = [t.clone().requires_grad_(True) for t in (log_a, b, h0)]
        h = scan(*inputs)
        results.append([h.detach(), *torch.autograd.grad((h * w).sum(), inputs)])
    for other in results[1:]:
        for u, v in zip(other, results[0]):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_float32_loop_rounds_as_the_steps_do():
    log_a, b, h0 = _coefficients(4096, 2, 64, signed=True, seed=5)
    exact = sequential_scan(log_a, b, h0)
    error = (loop_scan(log_a.float(), b.float(), h0.float()).double() - exact).abs().max() / exact.abs().max()
    assert error.item() < 1e-5


@pytest.mark.parametrize("signed", [False, True], ids=["positive-b", "signed-b"])
@pytest.mark.parametrize("L", [64, 512, 4096])
def test_float32_scan_within_its_bound_of_float64(L, signed):
    """float32 against float64, relative to the largest |h|: within 2 ε · min(chunk, L) · max|log a_t|.

    Why this bound: within a chunk the scan returns exp(A_t + log Σ_t) with
    A_t = Σ_{r≤t} log a_r and log Σ_t ≈ -A_t, so the rounding of that sum is ε |A_t|, and
    |A_t| ≤ min(chunk, L) · max|log a_t|; carried to the next chunk, an error only decays
    (every a_t < 1). The factor 2 covers the cumulative sum's own rounding. Measured on
    these inputs: at most ~0.7 of the bound without the 2. (The sequential float32 loop
    stays within ~1e-6: the scan trades precision for parallelism, and chunks bound it.)
    """
    log_a, b, h0 = _coefficients(L, 2, 64, signed, seed=4)
    exact = sequential_scan(log_a, b, h0)
    h32 = linear_scan(log_a.float(), b.float(), h0.float()).double()
    bound = 2 * EPS32 * min(CHUNK, L) * log_a.abs().max().item()
    error = ((h32 - exact).abs().max() / exact.abs().max()).item()
    assert error <= bound, (error, bound)
    assert bound < 2e-3  # the bound itself is small enough to be worth stating


def test_chunk_must_be_a_positive_integer():
    log_a, b, h0 = _coefficients(4, 1, 2, signed=False)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        linear_scan(log_a, b, h0, 0)


@pytest.mark.parametrize("positive", [True, False], ids=["g", "linear"])
def test_gradcheck_the_fused_mingru_loop_with_padding(positive):
    gen = torch.Generator().manual_seed(6)
    projected = torch.randn(6, 3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = (torch.arange(6)[:, None] < torch.tensor([6, 2, 4])).unsqueeze(-1)
    assert torch.autograd.gradcheck(lambda p, h: MinGRULoop.apply(p, h, mask, positive), (projected, h0))
    assert torch.autograd.gradcheck(lambda p, h: MinGRULoop.apply(p, h, None, positive), (projected, h0))
    # the same numbers as the cell's own coefficients through the generic loop
    cell = MinGRUCell(1, 4, candidate="g" if positive else "linear", dtype=torch.float64)
    log_a, b = cell.coefficients(projected.detach())
    torch.testing.assert_close(
        MinGRULoop.apply(projected.detach(), h0.detach(), None, positive),
        sequential_scan(log_a, b, h0.detach()),
        rtol=1e-12,
        atol=1e-14,
    )
