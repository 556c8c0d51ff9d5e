"""When to try again something that keeps failing: a doubling delay with a cap."""

from __future__ import annotations


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``base``, doubled each time, capped.

    >>> [retry_delay(n, 2.0, 30.0) for n in range(1, 7)]
    [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    """
    if failures <= 1:
        return min(base, cap)
    # Past 2**64 the exponent overflows a float for nothing: the cap is reached long before.
    return min(base * 2.0 ** min(failures - 1, 64), cap)
