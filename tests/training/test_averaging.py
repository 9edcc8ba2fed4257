"""NT-ASGD: the averaged iterates against torch's ASGD, the switch, and a run that uses them;
``train.average_from``: the mean of every step's weights from a given epoch on."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkit
import rnnkit.training.loop as loop
from conftest import write_toy_lm_corpus
from rnnkit.config import load_config
from rnnkit.data.corpora import load_corpus, locate
from rnnkit.training.averaging import ParameterAverage
from rnnkit.training.checkpoint import load_state, read_record
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


TINY = ["--model.cell=lstm", "--model.hidden_size=4", "--model.embed_size=4", "--train.batch_size=4"]
TINY += ["--train.bptt=6", "--train.threads=1", "--train.lr=1", "--train.checkpoint_every=0"]


def test_average_from_is_the_mean_of_every_step_from_that_epoch_on(tmp_path, monkeypatch):
    """Each optimizer step's weights are recorded beside the run (the optimizer wrapped, the
    averaging untouched); the average last/ saves is their mean over epochs 2 and 3 exactly,
    the log says when averaging was on, and best/ holds averaged weights."""
    corpus = load_corpus(locate(write_toy_lm_corpus(tmp_path)))
    steps: list[list[torch.Tensor]] = []
    make = loop.make_optimizer

    def recording(model, config):
        optimizer = make(model, config)
        step = optimizer.step

        def stepped(*args, **kwargs):
            out = step(*args, **kwargs)
            steps.append([p.detach().clone() for p in model.parameters()])
            return out

        optimizer.step = stepped
        return optimizer

    monkeypatch.setattr(loop, "make_optimizer", recording)
    config = load_config(None, [*TINY, "--train.epochs=3", "--train.average_from=2"])
    loop.fit(config, corpus, tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "epoch" in line and "train_loss" in line]
    assert [e["averaging"] for e in epochs] == [False, True, True]
    first = epochs[0]["step"]  # the steps of epoch 1, not averaged
    assert 0 < first < len(steps) == epochs[-1]["step"]
    record, tensors = load_state(tmp_path / "run" / "last")
    assert record["resume"]["average"] == {"active": True, "count": len(steps) - first}
    expected = [torch.stack(ps).double().mean(0) for ps in zip(*steps[first:])]
    for i, mean in enumerate(expected):
        torch.testing.assert_close(tensors[f"average.{i}"].double(), mean, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(steps[-1][i].double(), mean)  # the last weights are not the mean
    assert read_record(tmp_path / "run" / "best")["epoch"] == 3  # best/ is the last epoch's average
    saved = list(rnnkit.load(tmp_path / "run").model.parameters())
    assert all(torch.equal(p.detach(), tensors[f"average.{i}"]) for i, p in enumerate(saved))


def test_average_from_after_the_last_epoch_is_a_warning(tmp_path, capsys):
    """A preset that averages from epoch 3 still trains with ``--train.epochs=2`` (a quick
    trial): it says that nothing is averaged, and nothing is."""
    corpus = load_corpus(locate(write_toy_lm_corpus(tmp_path)))
    config = load_config(None, [*TINY, "--train.epochs=2", "--train.average_from=3"])
    loop.fit(config, corpus, tmp_path / "run", progress=False)
    said = capsys.readouterr()
    assert "warning: train.average_from = 3 is after the last epoch (train.epochs = 2)" in said.out + said.err
    record, _ = load_state(tmp_path / "run" / "last")
    assert record["resume"]["average"] == {"active": False, "count": 0}
