"""95% intervals for the numbers a notebook renders from one build: a rate over prompts, a mean or ratio of means.

A real pair is one build, so its spread over seeds is unknown; what is known is how much its numbers would move had
other prompts of the same sets been drawn. :func:`rate` is Wilson's score interval for a share (right at 0% and
100%, where the normal approximation gives nothing); :func:`bootstrap` resamples prompts (a fixed seed) for any
statistic of per-prompt values, a ratio of two means included.

>>> rate(5, 10)
Interval(value=0.5, low=0.2366, high=0.7634)
>>> str(rate(0, 20))
'0.000 (95%: 0.000-0.161)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

Z95 = 1.959964


@dataclass(frozen=True)
class Interval:
    """A statistic and its 95% interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return self.format(".3f")

    def format(self, fmt: str = ".3f") -> str:
        return f"{self.value:{fmt}} (95%: {self.low:{fmt}}-{self.high:{fmt}})"


def rate(k: int, n: int) -> Interval:
    """``k`` of ``n`` as a share with Wilson's 95% score interval (rounded to 4 places)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"a rate needs 0 <= k <= n and n > 0, got {k} of {n}")
    p, z2 = k / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(round(p, 4), round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def share(flags: Iterable[bool]) -> Interval:
    """The share of true flags, with :func:`rate`'s interval."""
    flags = [bool(f) for f in flags]
    return rate(sum(flags), len(flags))


def bootstrap(statistic: Callable[..., float], *columns: Sequence[float], draws: int = 2000,
              seed: int = 0, groups: Sequence | None = None) -> Interval:
    """``statistic(*columns)`` with a percentile 95% interval from ``draws`` resamplings of the rows (the same rows
    drawn from every column: one row is one prompt). Draws whose statistic is not a number are left out.

    ``groups`` (one label per row, e.g. the organisms' concepts): resample whole groups, not rows (a cluster
    bootstrap), for prompts that are not independent: requests about one concept move together.

    >>> mean = lambda x: sum(x) / len(x)
    >>> bootstrap(mean, [1.0] * 8).format(".1f")
    '1.0 (95%: 1.0-1.0)'
    """
    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns):
        raise ValueError(f"bootstrap needs columns of one non-zero length, got {[len(c) for c in columns]}")
    values = [torch.as_tensor(c, dtype=torch.float64) for c in columns]
    generator = torch.Generator().manual_seed(seed)
    if groups is None:
        clusters = [torch.tensor([i]) for i in range(n)]
    else:
        if len(groups) != n:
            raise ValueError(f"groups holds {len(groups)} labels for {n} rows")
        members: dict = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        clusters = [torch.tensor(rows) for rows in members.values()]
    drawn = []
    for _ in range(draws):
        picked = torch.randint(0, len(clusters), (len(clusters),), generator=generator)
        rows = picked if groups is None else torch.cat([clusters[i] for i in picked.tolist()])
        s = float(statistic(*(v[rows] for v in values)))
        if not math.isnan(s):
            drawn.append(s)
    if not drawn:
        raise ValueError("no bootstrap draw gave a number")
    low, high = torch.quantile(torch.tensor(drawn, dtype=torch.float64), torch.tensor([0.025, 0.975],
                                                                                       dtype=torch.float64))
    return Interval(float(statistic(*values)), float(low), float(high))
