"""The one percentile definition behind every p50/p95 the benches publish."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile (``q`` in 0-100): the smallest value with at least q % of values <= it.

    Always one of the measured values (never interpolated), so a p95 of latencies
    is a latency some event really had; NaN for no values. Before this one the
    benches used three: ``sorted[round(q (n-1))]`` (captions, gpu_capacity),
    ``sorted[int(q n)]`` (viewers: one rank higher where q n is whole) and
    numpy's linear interpolation (kinesis_latency, kinesis_e2e), and
    ``statistics.median`` (the mean of the two middle values) for p50.
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0-100")
    rank = max(1, math.ceil(q * len(ordered) / 100))  # q * n first: 95 * 20 / 100 is exactly 19
    return ordered[rank - 1]
