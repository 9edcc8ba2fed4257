"""One f'(h) per nonlinearity (issue 17): the kernels' backward and the lecture's bound read the same one."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells.elman import ACTIVATIONS, derivative
from rnnkit.names import NONLINEARITIES


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_derivative_through_the_output_is_autograds(nonlinearity):
    a = torch.randn(50, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = a[a.abs() > 1e-3].requires_grad_()  # relu has no derivative at 0
    h = ACTIVATIONS[nonlinearity](a)
    (expected,) = torch.autograd.grad(h.sum(), a)
    torch.testing.assert_close(derivative(h.detach(), nonlinearity), expected)


def test_the_kernels_and_the_bound_use_it():
    from rnnkit.analysis import gradient_flow
    from rnnkit.layers import kernels

    assert kernels.derivative is derivative and gradient_flow.derivative is derivative
