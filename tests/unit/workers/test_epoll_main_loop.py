# mypy: disable-error-code="no-untyped-call"
"""The workers' reactor loop: a turn with nothing due skips ``runUntilCurrent``, and
everything the stock loop runs (timed calls, thread calls, cancellations, the stop
and its shutdown triggers, a failing turn) still runs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from sipsock.workers.epoll import ExclusiveEPollReactor

#: Every test stops its reactor well before this (a stuck loop fails, not hangs).
DEADLINE = 10.0


@pytest.fixture
def reactor() -> Iterator[ExclusiveEPollReactor]:
    made = ExclusiveEPollReactor()
    try:
        yield made
    finally:
        made.removeAll()
        made._poller.close()


def run(reactor: ExclusiveEPollReactor) -> None:
    """Run ``reactor`` until it stops; stops it (and fails the test) at `DEADLINE`."""
    timed_out: list[bool] = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.callLater(DEADLINE, give_up)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert not timed_out, "the reactor did not stop by itself"


class Counting(ExclusiveEPollReactor):
    """Counts the turns that ran ``runUntilCurrent``."""

    def __init__(self) -> None:
        self.bookkeeping = 0
        super().__init__()

    def runUntilCurrent(self) -> None:
        self.bookkeeping += 1
        super().runUntilCurrent()


class Reader:
    """Reads one datagram per wake-up; stops the reactor after ``limit``."""

    sipsockPlainCall = True

    def __init__(self, reactor: Any, sock: socket.socket, peer: socket.socket, limit: int) -> None:
        self.reactor, self.sock, self.peer, self.limit = reactor, sock, peer, limit
        self.reads = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "reader"

    def doRead(self) -> None:
        self.sock.recv(100)
        self.reads += 1
        if self.reads == self.limit:
            self.reactor.stop()
        else:
            self.peer.send(b"x")  # the next wake-up

    def connectionLost(self, reason: object) -> None:
        pass


def test_wake_ups_with_nothing_due_skip_run_until_current() -> None:
    reactor = Counting()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with left, right:
            reader = Reader(reactor, left, right, 200)
            reactor.addReader(reader)
            reactor.callWhenRunning(right.send, b"x")
            run(reactor)
            reactor.removeReader(reader)
    finally:
        reactor.removeAll()
        reactor._poller.close()
    assert reader.reads == 200
    # The start-up call, the stop and the shutdown: a handful of turns, not one per wake-up.
    assert reactor.bookkeeping < 20


def test_timed_calls_run_in_order_and_cancelled_ones_never(
    reactor: ExclusiveEPollReactor,
) -> None:
    ran: list[str] = []
    reactor.callLater(0.02, ran.append, "second")
    reactor.callLater(0.01, ran.append, "first")
    cancelled = [reactor.callLater(0.015, ran.append, f"cancelled {n}") for n in range(120)]
    for call in cancelled:
        call.cancel()
    reactor.callLater(0.03, reactor.stop)
    run(reactor)
    assert ran == ["first", "second"]
    # Over 50 cancellations: the heap was compacted, as the stock loop does.
    assert sum(call.cancelled for call in reactor._pendingTimedCalls) < 50


def test_a_call_from_another_thread_runs_in_the_loop(reactor: ExclusiveEPollReactor) -> None:
    ran: list[bool] = []

    def from_thread() -> None:
        ran.append(threading.current_thread() is threading.main_thread())
        reactor.stop()

    reactor.callWhenRunning(
        lambda: threading.Thread(target=reactor.callFromThread, args=(from_thread,)).start()
    )
    run(reactor)
    assert ran == [True]


def test_a_stop_fires_the_shutdown_triggers(reactor: ExclusiveEPollReactor) -> None:
    fired: list[str] = []
    reactor.addSystemEventTrigger("before", "shutdown", fired.append, "before")
    reactor.addSystemEventTrigger("after", "shutdown", fired.append, "after")
    reactor.callWhenRunning(reactor.stop)
    run(reactor)
    assert fired == ["before", "after"]


def test_a_failing_turn_is_logged_and_the_loop_goes_on(reactor: ExclusiveEPollReactor) -> None:
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    failing = [True]
    real = reactor.doIteration

    def iterate(timeout: float | None) -> None:
        if failing:
            failing.clear()
            raise RuntimeError("broken turn")
        real(timeout)

    reactor.doIteration = iterate  # type: ignore[method-assign]
    reactor.callLater(0.01, reactor.stop)
    globalLogPublisher.addObserver(observe)
    try:
        run(reactor)
    finally:
        globalLogPublisher.removeObserver(observe)
    [failure] = [event for event in events if "log_failure" in event]
    assert failure["log_failure"].check(RuntimeError)
    assert "Unexpected error in main loop" in failure["log_format"]
