"""`cost_growth`: how the CPU cost of a step grows with its input, robust to a busy machine.

A timed assert ("parsing this takes under 1 ms") fails on a loaded machine.
The ratio of the cost at ``n`` and at ``factor * n`` does not: both sizes are
run in turn, several times, and the fastest run of each is kept, so load on
the other core slows both alike. A linear step gives about ``factor``, a
quadratic one about ``factor ** 2``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cost_growth(
    make: Callable[[int], T], run: Callable[[T], object], n: int, factor: int = 8, rounds: int = 5
) -> float:
    """Cost of ``run(make(factor * n))`` over cost of ``run(make(n))`` (CPU, best of ``rounds``)."""
    small, large = make(n), make(factor * n)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for which, value in enumerate((small, large)):
            start = time.process_time()
            run(value)
            best[which] = min(best[which], time.process_time() - start)
    return best[1] / max(best[0], 1e-6)
