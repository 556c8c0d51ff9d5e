"""Waiting for many Deferreds at once: each result, or all-or-the-first-failure.

The worker pool's copy, in one place; the project-wide helper replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


async def settle(waits: Sequence[Deferred[T]]) -> list[T | Failure]:
    """Wait for every Deferred; each result is its value or its Failure."""
    results: list[T | Failure] = []
    for wait in waits:
        try:
            results.append(await wait)
        except Exception:
            results.append(Failure())  # type: ignore[no-untyped-call]
    return results


def all_or_first_failure(waits: Sequence[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once all of ``waits`` fired; fails with the first failure, if any."""

    async def gather() -> None:
        failures = [r for r in await settle(waits) if isinstance(r, Failure)]
        if failures:
            failures[0].raiseException()

    return Deferred.fromCoroutine(gather())
