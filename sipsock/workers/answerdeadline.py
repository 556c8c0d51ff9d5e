"""`AnswerDeadlines`: one timer for every answer a channel waits for, not one per batch.

A relay batch sent straight to a worker of another pool (`sipsock.workers.direct`)
fails when no answer comes within a fixed number of seconds. A timer per batch
(`sipsock.workers.deadline.within`) was made and cancelled for every batch: a
`DelayedCall`, two Deferreds and their closures, and a reactor turn that could no
longer skip ``runUntilCurrent`` (its new-timer list was never empty), about
5-10 us of a relayed message's cost when each batch holds one message.

The deadline is the same for every batch of a channel, so the deadlines come
in the order the batches were sent: the batches wait in that order, and a
single timer is armed for the oldest one still waiting. Answers settle their
batch wherever it stands; those at the head leave at once. When the timer
fires, each batch whose deadline has passed fails with ``late()``, and the
timer is armed again for the next one still waiting. A batch fails at its own
deadline, as with a timer of its own, and a late answer is ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

T = TypeVar("T")


class _Waiting(Generic[T]):
    """One answer waited for: its deadline and the caller's Deferred."""

    __slots__ = ("deadline", "result", "settled")

    def __init__(self, deadline: float, result: Deferred[T]) -> None:
        self.deadline = deadline
        self.result = result
        self.settled = False


class AnswerDeadlines(Generic[T]):
    """Answers that fail with ``late()`` unless they come within ``seconds`` (see the module).

    ``clock`` provides ``seconds`` and ``callLater`` (the reactor).
    """

    def __init__(self, seconds: float, clock: Any, late: Callable[[], Exception]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._late = late
        self._waiting: deque[_Waiting[T]] = deque()
        self._timer: IDelayedCall | None = None

    @property
    def waiting(self) -> int:
        """Answers still waited for (settled ones behind an older waiting one included)."""
        return len(self._waiting)

    def watch(self, answer: Deferred[T]) -> Deferred[T]:
        """``answer``'s result if it comes in time, else a failure with ``late()``."""
        if answer.called:
            return answer  # failed or answered at once: nothing to wait for
        result: Deferred[T] = Deferred()
        entry = _Waiting(self._clock.seconds() + self._seconds, result)
        self._waiting.append(entry)
        if self._timer is None:
            self._timer = self._clock.callLater(self._seconds, self._expire)
        answer.addBoth(self._settle, entry)
        return result

    def _settle(self, value: T | Failure, entry: _Waiting[T]) -> None:
        if entry.settled:
            return  # too late: the caller was told already
        entry.settled = True
        waiting = self._waiting
        while waiting and waiting[0].settled:
            waiting.popleft()
        if isinstance(value, Failure):
            entry.result.errback(value)
        else:
            entry.result.callback(value)

    def _expire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        waiting = self._waiting
        while waiting and (waiting[0].settled or waiting[0].deadline <= now):
            entry = waiting.popleft()
            if not entry.settled:
                entry.settled = True
                entry.result.errback(Failure(self._late()))  # type: ignore[no-untyped-call]
        if waiting:
            self._timer = self._clock.callLater(max(0.0, waiting[0].deadline - now), self._expire)

    def stop(self) -> None:
        """Cancel the timer (the answers still waited for are settled by their channel)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
