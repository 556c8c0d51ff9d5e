"""A Prometheus-style histogram: cumulative bucket counts, sum and count of observations."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Final

#: Upper bounds (seconds) of the reload duration buckets: an unchanged table
#: reloads in milliseconds, hundreds of new sockets in a second or more.
RELOAD_SECONDS_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Histogram:
    """Observations counted in buckets of upper bounds ``bounds`` (and ``+Inf``)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be increasing and distinct: {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` for each bucket, ``inf`` last."""
        result: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self._counts, strict=True):
            total += count
            result.append((bound, total))
        return result
