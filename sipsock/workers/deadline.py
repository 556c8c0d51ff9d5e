"""Deadlines on what the control process asks of a worker.

Every command sent to a worker is raced against a timer (`within`): the
caller gets the answer, or `WorkerTimeoutError` once the deadline passed. The AMP
``callRemote`` Deferred itself is never timed out nor cancelled: a late
answer would then fire it a second time (``AlreadyCalledError``). Its late
result, answer or failure, is dropped here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


class WorkerTimeoutError(Exception):
    """A worker did not answer a command in time."""

    def __init__(
        self,
        worker: str,
        pid: int | None,
        command: str,
        seconds: float,
        *,
        kind: str = "UDP worker",
    ) -> None:
        self.worker = worker
        self.pid = pid
        self.command = command
        self.seconds = seconds
        super().__init__(
            f"{kind} {worker} (pid {pid}) did not answer {command} within {seconds:g} s"
        )


def within(
    waiting: Deferred[T], seconds: float, clock: Any, late: Callable[[], Exception]
) -> Deferred[T]:
    """``waiting``'s result if it comes within ``seconds``, else a failure with ``late()``.

    ``late`` is called once, when the deadline passes (it may act: kill the
    worker). ``clock`` provides ``callLater``.
    """
    result: Deferred[T] = Deferred()

    def expire() -> None:
        result.errback(Failure(late()))  # type: ignore[no-untyped-call]

    timer = clock.callLater(seconds, expire)

    def settled(value: T | Failure) -> None:
        if not timer.active():
            return  # too late: the caller was told already
        timer.cancel()
        if isinstance(value, Failure):
            result.errback(value)
        else:
            result.callback(value)

    waiting.addBoth(settled)
    return result
