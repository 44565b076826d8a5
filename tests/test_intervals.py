"""Intervals against numbers computed outside the project: Wilson's interval from its published worked values,
the bootstrap against the normal interval of a mean it must approach."""

from __future__ import annotations

import math

import pytest
import torch

from interp import intervals


@pytest.mark.parametrize("k, n, low, high", [
    (5, 10, 0.2366, 0.7634),   # Newcombe (1998), Table I's method 3 on 5/10 gives 0.2366-0.7634
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998)'s 81/263: 0.2553-0.3662
])
def test_wilson_matches_published_values(k, n, low, high):
    got = intervals.rate(k, n)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize("k, n", [(-1, 3), (4, 3), (0, 0)])
def test_a_rate_that_is_not_one_is_refused(k, n):
    with pytest.raises(ValueError, match="0 <= k <= n"):
        intervals.rate(k, n)


def test_the_bootstrap_of_a_mean_approaches_its_normal_interval():
    x = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = intervals.bootstrap(lambda v: v.mean(), x, draws=4000)
    half = 1.96 * x.std().item() / math.sqrt(len(x))
    assert got.value == pytest.approx(x.mean().item())
    assert got.low == pytest.approx(x.mean().item() - half, abs=0.02)
    assert got.high == pytest.approx(x.mean().item() + half, abs=0.02)


def test_the_bootstrap_draws_the_same_rows_from_every_column():
    a = torch.arange(50, dtype=torch.float64)
    ratio = intervals.bootstrap(lambda x, y: x.sum() / y.sum(), a, 2 * a)
    assert (ratio.value, ratio.low, ratio.high) == pytest.approx((0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="one non-zero length"):
        intervals.bootstrap(lambda x, y: 0.0, [1.0], [1.0, 2.0])


def test_a_cluster_bootstrap_of_singletons_is_the_row_bootstrap_and_clusters_widen_it():
    torch.manual_seed(0)
    x = torch.randn(40)
    mean = lambda v: v.mean()
    rows = intervals.bootstrap(mean, x)
    singletons = intervals.bootstrap(mean, x, groups=list(range(40)))
    assert (singletons.low, singletons.high) == (rows.low, rows.high)
    # ten concepts of four prompts that move together: the rows are not 40 independent draws
    shared = torch.randn(10).repeat_interleave(4) + 0.1 * torch.randn(40)
    concepts = [i // 4 for i in range(40)]
    naive, grouped = intervals.bootstrap(mean, shared), intervals.bootstrap(mean, shared, groups=concepts)
    assert grouped.value == naive.value
    assert grouped.high - grouped.low > 1.5 * (naive.high - naive.low)
    with pytest.raises(ValueError, match="labels for 40 rows"):
        intervals.bootstrap(mean, x, groups=[0, 1])
