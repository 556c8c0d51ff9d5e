# mypy: disable-error-code="no-untyped-call"
"""`settle` and `all_or_first_failure`: every Deferred waited for, failures kept."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sipsock.workers.waits import all_or_first_failure, settle


def test_settle_keeps_each_result_or_failure_in_order() -> None:
    late: Deferred[int] = Deferred()
    results: list[Any] = []
    gathered = Deferred.fromCoroutine(settle([defer.succeed(1), defer.fail(KeyError("k")), late]))
    gathered.addCallback(results.append)
    assert results == []
    late.callback(3)
    [(one, failed, three)] = results
    assert (one, three) == (1, 3)
    assert isinstance(failed, Failure) and failed.check(KeyError)


def test_all_or_first_failure_waits_for_all_then_fails_with_the_first() -> None:
    late: Deferred[None] = Deferred()
    results: list[Any] = []
    all_or_first_failure(
        [defer.fail(ValueError("first")), late, defer.fail(KeyError("second"))]
    ).addBoth(results.append)
    assert results == []
    late.callback(None)
    [failure] = results
    assert isinstance(failure, Failure) and failure.check(ValueError)
    done: list[Any] = []
    all_or_first_failure([defer.succeed(1)]).addBoth(done.append)
    assert done == [None]
