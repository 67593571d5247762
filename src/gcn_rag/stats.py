"""Small statistics shared by the load tests, the monitor, model comparisons and A/B tests:
percentiles, and 95% intervals of a proportion, of a difference of proportions and of a
difference of quantiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gcn_rag.errors import BadInputError


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by linear interpolation between closest ranks.

    Same definition as numpy's default and DuckDB's ``quantile_cont``; NaN for no values.
    """
    if not 0 <= q <= 1:
        raise BadInputError(f"A quantile is between 0 and 1; got {q}.")
    if not values:
        return math.nan
    ordered = [float(v) for v in sorted(values)]
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


#: The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson(hits: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``hits / total`` (NaN, NaN for no trials).

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is honest at 0 or 1 hits.
    """
    if total <= 0:
        return math.nan, math.nan
    if not 0 <= hits <= total:
        raise BadInputError(f"{hits} successes out of {total} trials is not a proportion.")
    p, n = hits / total, float(total)
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def newcombe(
    hits_a: int, total_a: int, hits_b: int, total_b: int, z: float = Z95
) -> tuple[float, float, float]:
    """``p_a - p_b`` with its interval by Newcombe's hybrid score method (his method 10:
    the two Wilson intervals combined), for independent samples; NaN without trials."""
    if total_a <= 0 or total_b <= 0:
        return math.nan, math.nan, math.nan
    p_a, p_b = hits_a / total_a, hits_b / total_b
    low_a, high_a = wilson(hits_a, total_a, z)
    low_b, high_b = wilson(hits_b, total_b, z)
    d = p_a - p_b
    low = d - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = d + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return d, low, high


def bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    quantiles: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = 1000,
    cap: int = 5000,
) -> list[tuple[float, float, float]]:
    """Per q in ``quantiles``: the q-quantile of ``a`` minus that of ``b``, with a 95%
    percentile-bootstrap interval (the quantiles share the resamples).

    Deterministic for a ``seed``. The cost is bounded: a sample larger than ``cap`` is first
    thinned to ``cap`` values drawn at random (the interval then reflects ``cap`` values,
    so it is wider, never narrower, than the full sample's), and resampled in blocks.
    NaN, NaN, NaN when either sample has fewer than two values.
    """
    import numpy as np

    if len(a) < 2 or len(b) < 2:
        return [(math.nan, math.nan, math.nan) for _ in quantiles]
    rng = np.random.default_rng(seed)
    samples = []
    for values in (a, b):
        array = np.asarray(values, dtype=float)
        if len(array) > cap:
            array = rng.choice(array, size=cap, replace=False)
        samples.append(array)
    diffs = np.empty((len(quantiles), resamples))
    block = max(1, 500_000 // max(len(s) for s in samples))  # ~4 MB of draws at a time
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        drawn = [
            np.quantile(rng.choice(s, size=(rows, len(s))), quantiles, axis=1) for s in samples
        ]
        diffs[:, start : start + rows] = drawn[0] - drawn[1]
    found = []
    for q, row in zip(quantiles, diffs, strict=True):
        low, high = np.quantile(row, [0.025, 0.975])
        found.append((percentile(list(a), q) - percentile(list(b), q), float(low), float(high)))
    return found
