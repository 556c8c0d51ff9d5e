"""`within`: an answer raced against a timer, and `Incidents`, the journal of late workers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.incidents import Incidents
from sipsock.workers.deadline import WorkerTimeoutError, within


def late_error() -> WorkerTimeoutError:
    return WorkerTimeoutError("dynamic/1", 42, "Stats", 2.0)


def test_an_answer_in_time_is_passed_on_and_the_timer_cancelled() -> None:
    clock = Clock()
    answer: Deferred[int] = Deferred()
    results: list[Any] = []
    within(answer, 2.0, clock, late_error).addBoth(results.append)
    answer.callback(7)
    assert results == [7]
    assert clock.getDelayedCalls() == []


def test_a_failure_in_time_is_passed_on() -> None:
    clock = Clock()
    answer: Deferred[int] = Deferred()
    results: list[Any] = []
    within(answer, 2.0, clock, late_error).addBoth(results.append)
    answer.errback(ValueError("refused"))
    [failure] = results
    assert isinstance(failure, Failure) and isinstance(failure.value, ValueError)


def test_no_answer_fails_at_the_deadline_once_and_a_late_answer_is_dropped() -> None:
    clock = Clock()
    answer: Deferred[int] = Deferred()
    calls: list[int] = []

    def late() -> WorkerTimeoutError:
        calls.append(1)
        return late_error()

    results: list[Any] = []
    within(answer, 2.0, clock, late).addBoth(results.append)
    clock.advance(1.9)
    assert results == []
    clock.advance(0.1)
    [failure] = results
    assert isinstance(failure, Failure)
    assert str(failure.value) == "UDP worker dynamic/1 (pid 42) did not answer Stats within 2 s"
    answer.callback(7)  # late: no AlreadyCalledError, nothing more
    answer2: Deferred[int] = Deferred()
    within(answer2, 1.0, clock, late).addBoth(results.append)
    clock.advance(1.0)
    answer2.errback(ConnectionError("gone"))  # a late failure is consumed too
    assert len(results) == 2 and calls == [1, 1]


def test_incidents_since_a_mark_and_only_the_last_kept() -> None:
    incidents = Incidents(keep=3)
    assert incidents.since(incidents.mark()) == []
    incidents.record("a")
    mark = incidents.mark()
    for line in "bcde":
        incidents.record(line)
    assert incidents.since(mark) == ["c", "d", "e"]  # b was forgotten
    assert incidents.since(incidents.mark()) == []
