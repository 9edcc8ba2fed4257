"""The CRF against brute force: every tag sequence enumerated, for log Z, likelihoods and Viterbi."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.models.crf import CRF


def brute_force(crf: CRF, emissions: torch.Tensor, length: int) -> dict[tuple[int, ...], float]:
    """s(y) of every tag sequence of one sequence, written from the definition."""
    K = crf.num_tags
    scores = {}
    for y in itertools.product(range(K), repeat=length):
        s = crf.start[y[0]] + crf.end[y[-1]] + sum(emissions[t, y[t]] for t in range(length))
        s = s + sum(crf.transitions[y[t - 1], y[t]] for t in range(1, length))
        scores[y] = float(s.detach())
    return scores


@pytest.fixture
def crf_and_batch():
    torch.manual_seed(0)
    crf = CRF(3).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(5, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1, 4])
    return crf, emissions, lengths


def test_log_partition_and_likelihood_equal_enumeration(crf_and_batch):
    crf, emissions, lengths = crf_and_batch
    tags = torch.randint(3, (5, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        log_z = crf.log_partition(emissions, lengths)
        ll = crf.log_likelihood(emissions, tags, lengths)
    for n in range(4):
        n_len = int(lengths[n])
        scores = brute_force(crf, emissions[:, n], n_len)
        expected_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
        assert float(log_z[n]) == pytest.approx(float(expected_z), rel=1e-12)
        y = tuple(int(v) for v in tags[:n_len, n])
        assert float(ll[n]) == pytest.approx(scores[y] - float(expected_z), rel=1e-12)


def test_padding_never_enters(crf_and_batch):
    crf, emissions, lengths = crf_and_batch
    tags = torch.randint(3, (5, 4))
    noisy = emissions.clone()
    mask = torch.arange(5)[:, None] >= lengths[None, :]
    noisy[mask] = 1e3  # garbage at padded steps
    noisy_tags = tags.clone()
    noisy_tags[mask] = 2
    torch.testing.assert_close(
        crf.log_likelihood(noisy, noisy_tags, lengths), crf.log_likelihood(emissions, tags, lengths)
    )
    assert crf.decode(noisy, lengths) == crf.decode(emissions, lengths)


def test_viterbi_finds_the_best_sequence(crf_and_batch):
    crf, emissions, lengths = crf_and_batch
    paths = crf.decode(emissions, lengths)
    for n, path in enumerate(paths):
        scores = brute_force(crf, emissions[:, n], int(lengths[n]))
        assert tuple(path) == max(scores, key=scores.get)


def test_gradient_of_the_likelihood_matches_finite_differences(crf_and_batch):
    crf, emissions, lengths = crf_and_batch
    tags = torch.randint(3, (5, 4), generator=torch.Generator().manual_seed(2))
    emissions = emissions.clone().requires_grad_(True)
    torch.autograd.gradcheck(lambda e: crf.log_likelihood(e, tags, lengths), (emissions,))
