"""NT-ASGD: the averaged iterates against torch's ASGD, the switch, and a run that uses them."""

from __future__ import annotations

import pytest
import torch

from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.schedules import nonmonotone_trigger


def test_average_equals_torch_asgd_ax():
    """torch.optim.ASGD(t0=0, lambd=0) keeps the same mean of the iterates in its ax.

    torch's mean lags one step (its mu is computed a step late: ax is the iterate itself
    after steps 1 and 2, then the mean of iterates 2..n), so ours starts after step 1 here.
    torch keeps ASGD's step size and mu in the default dtype: float64 here.
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _compare_with_asgd()
    finally:
        torch.set_default_dtype(default)


def _compare_with_asgd():
    torch.manual_seed(0)
    ours_model = torch.nn.Linear(5, 3).double()
    ref_model = torch.nn.Linear(5, 3).double()
    ref_model.load_state_dict(ours_model.state_dict())
    sgd = torch.optim.SGD(ours_model.parameters(), lr=0.125)
    asgd = torch.optim.ASGD(ref_model.parameters(), lr=0.125, lambd=0.0, alpha=0.75, t0=0.0)
    average = ParameterAverage(ours_model.parameters())
    for step in range(1, 8):
        x = torch.randn(4, 5, dtype=torch.float64)
        for model, opt in ((ours_model, sgd), (ref_model, asgd)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
        average.update()
        if step == 1:
            average.start()
    for p, a, q in zip(ours_model.parameters(), average.average, ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)  # same SGD iterates
        torch.testing.assert_close(a, asgd.state[q]["ax"], rtol=1e-12, atol=1e-14)


def test_swapped_puts_the_average_in_and_the_weights_back():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    average = ParameterAverage([p])
    with average.swapped():  # not averaging yet: nothing changes
        assert p.tolist() == [1.0, 2.0]
    average.start()
    for value in ([1.0, 2.0], [3.0, 6.0]):
        with torch.no_grad():
            p.copy_(torch.tensor(value))
        average.update()
    with average.swapped():
        assert p.tolist() == [2.0, 4.0]
    assert p.tolist() == [3.0, 6.0]
    record, tensors = average.state()
    other = ParameterAverage([torch.nn.Parameter(torch.zeros(2))])
    other.load(record, tensors)
    assert other.active and other.count == 2 and other.average[0].tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    "history, nonmono, fires",
    [
        ([5.0, 4.0, 3.0, 2.0], 2, False),  # still improving
        ([5.0, 4.0, 4.5], 1, True),  # worse than 4.0, the best before the last epoch
        ([5.0, 4.0, 4.5], 2, False),  # the best before the last two epochs is 5.0
        ([5.0, 4.0, 4.5, 4.2], 2, True),  # 4.2 > 4.0
        ([5.0, 4.0], 5, False),  # too few epochs to judge
    ],
)
def test_nonmonotone_trigger(history, nonmono, fires):
    assert nonmonotone_trigger(history, nonmono) is fires
