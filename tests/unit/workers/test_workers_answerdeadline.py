"""One timer for the answers a relay channel waits for: each fails at its own deadline."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.workers.answerdeadline import AnswerDeadlines
from sipsock.workers.commands import WorkerError


class CountingClock(Clock):
    """A `Clock` that counts the timers it was asked for, by delay."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        self.asked.append(delay)
        return super().callLater(delay, callable, *args, **kw)


def late() -> Exception:
    return WorkerError("no answer within 10 s")


def outcome(waiting: Deferred[Any]) -> Any:
    """What ``waiting`` fired with so far (None: not yet), left in it."""
    box: list[Any] = []

    def keep(result: Any) -> Any:
        box.append(result)
        return result

    waiting.addBoth(keep)
    return box[0] if box else None


def reason(error: Any) -> str:
    """The reason of the `WorkerError` ``error`` (a `Failure`) holds."""
    assert isinstance(error, Failure) and isinstance(error.value, WorkerError)
    return error.value.reason


def test_many_answers_in_time_arm_one_timer_and_each_caller_gets_its_answer() -> None:
    clock = CountingClock()
    deadlines: AnswerDeadlines[bytes] = AnswerDeadlines(10.0, clock, late)
    for index in range(100):
        answer: Deferred[bytes] = Deferred()
        result = deadlines.watch(answer)
        clock.advance(0.01)
        answer.callback(b"%d" % index)
        assert outcome(result) == b"%d" % index
    assert clock.asked == [10.0]
    assert deadlines.waiting == 0
    clock.advance(10)  # the timer finds nothing and arms no other
    assert clock.asked == [10.0]
    assert clock.getDelayedCalls() == []


def test_each_answer_fails_at_its_own_deadline_and_a_late_answer_is_ignored() -> None:
    clock = Clock()
    deadlines: AnswerDeadlines[bytes] = AnswerDeadlines(10.0, clock, late)
    first: Deferred[bytes] = Deferred()
    first_result = deadlines.watch(first)
    clock.advance(5)
    second: Deferred[bytes] = Deferred()
    second_result = deadlines.watch(second)
    clock.advance(4.5)
    assert outcome(first_result) is None
    clock.advance(0.5)  # 10 s after the first
    error = outcome(first_result)
    assert reason(error) == "no answer within 10 s"
    assert outcome(second_result) is None
    first.callback(b"late")  # ignored
    clock.advance(4.5)
    assert outcome(second_result) is None
    clock.advance(0.5)  # 10 s after the second
    error = outcome(second_result)
    assert reason(error) == "no answer within 10 s"
    assert clock.getDelayedCalls() == []
    for result in (first_result, second_result):
        result.addErrback(lambda _: None)


def test_an_answer_out_of_order_settles_its_own_batch_only() -> None:
    clock = Clock()
    deadlines: AnswerDeadlines[bytes] = AnswerDeadlines(10.0, clock, late)
    first: Deferred[bytes] = Deferred()
    second: Deferred[bytes] = Deferred()
    first_result = deadlines.watch(first)
    second_result = deadlines.watch(second)
    second.callback(b"two")
    assert outcome(second_result) == b"two"
    assert deadlines.waiting == 2  # the second waits behind the first, settled
    first.errback(WorkerError("closed"))
    error = outcome(first_result)
    assert reason(error) == "closed"
    assert deadlines.waiting == 0
    first_result.addErrback(lambda _: None)


def test_an_answer_given_at_once_is_passed_on_without_a_timer() -> None:
    clock = CountingClock()
    deadlines: AnswerDeadlines[bytes] = AnswerDeadlines(10.0, clock, late)
    refused: Deferred[bytes] = Deferred()
    refused.errback(WorkerError("over the bound"))
    assert deadlines.watch(refused) is refused
    refused.addErrback(lambda _: None)
    assert clock.asked == []
