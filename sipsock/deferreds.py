"""Waiting for several Deferreds at once: the one copy of that rule.

Every wait here lets each Deferred fire (a failure never cuts the wait short)
and consumes every failure, so nothing is logged as "Unhandled error in
Deferred" later. They differ only in what they give:

* `settle`: each result, a value or its `Failure`, in the order given;
* `wait_all`: None, whatever happened (the caller only needs the moment);
* `all_or_first_failure`: None, or the first failure in the order given.

Twisted only (no reactor): the Deferreds bring their own timing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

T = TypeVar("T")


def settle(waits: Iterable[Deferred[T]]) -> Deferred[list[T | Failure]]:
    """Fires once every Deferred fired: each result is its value or its Failure."""
    gathered: Deferred[list[tuple[bool, Any]]] = DeferredList(list(waits), consumeErrors=True)
    return gathered.addCallback(lambda results: [value for _, value in results])


def wait_all(waits: Iterable[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once every Deferred fired; their failures are dropped."""
    return settle(waits).addCallback(lambda _: None)


def all_or_first_failure(waits: Iterable[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once every Deferred fired; fails with the first failure, if any."""

    def first_failure(results: list[Any]) -> Failure | None:
        return next((r for r in results if isinstance(r, Failure)), None)

    return settle(waits).addCallback(first_failure)
