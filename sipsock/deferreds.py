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

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


def settle(waits: Iterable[Deferred[T]]) -> Deferred[list[T | Failure]]:
    """Fires once every Deferred fired: each result is its value or its Failure.

    What ``DeferredList(waits, consumeErrors=True)`` gives, without its
    per-call cost (a reload waits on a few of these per socket): each value
    passes on unchanged, each failure is consumed; cancelling the wait cancels
    every Deferred.
    """
    pending = list(waits)
    results: list[Any] = [None] * len(pending)
    left = [len(pending)]

    def cancel(_: Deferred[list[T | Failure]]) -> None:
        for wait in pending:
            wait.cancel()

    done: Deferred[list[T | Failure]] = Deferred(cancel)
    if not pending:
        done.callback(results)
        return done

    def fired(result: Any, index: int) -> Any:
        results[index] = result
        left[0] -= 1
        if left[0] == 0 and not done.called:
            done.callback(results)
        return None if isinstance(result, Failure) else result

    for index, wait in enumerate(pending):
        if wait.called and not wait.paused and not wait._runningCallbacks and not wait._callbacks:
            # Fired already, its chain run to the end, with a plain value (a
            # subscriber with nothing to do answers ``succeed(None)``): taken
            # as it is, no callback run (a reload waits on a few per socket).
            value = wait.result
            if not isinstance(value, (Failure, Deferred)):
                results[index] = value
                left[0] -= 1
                continue
        wait.addBoth(fired, index)
    if left[0] == 0 and not done.called:
        done.callback(results)
    return done


def wait_all(waits: Iterable[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once every Deferred fired; their failures are dropped."""
    return settle(waits).addCallback(_nothing)


def _nothing(_: object) -> None:
    return None


def all_or_first_failure(waits: Iterable[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once every Deferred fired; fails with the first failure, if any."""

    def first_failure(results: list[Any]) -> Failure | None:
        return next((r for r in results if isinstance(r, Failure)), None)

    return settle(waits).addCallback(first_failure)
