"""Small statistics shared by the load tests, the monitor and model comparisons."""

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
