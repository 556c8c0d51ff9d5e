"""Bounded waits for tests: a condition polled until it holds or a deadline passes.

`wait_until` lets the reactor run between polls (tests of in-process
listeners and pools); `poll_until` blocks between polls, for tests whose
subject is another process (the daemon under twistd, SIPp, PostgreSQL):
there is no Deferred to await there, only its answers to ask for again.
`settle` is `poll_until` that answers False instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater

reactor: Any = _reactor


async def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.01,
) -> float:
    """Run the reactor until ``predicate()`` is true; the seconds it took.

    AssertionError naming ``what`` after ``timeout`` seconds.
    """
    started = reactor.seconds()
    while not predicate():
        if reactor.seconds() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await deferLater(reactor, interval)
    return float(reactor.seconds() - started)


def poll_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Ask ``check()`` every ``interval`` seconds until true; the seconds it took.

    AssertionError naming ``what`` after ``timeout`` seconds.
    """
    started = time.monotonic()
    if not settle(check, timeout, interval):
        raise AssertionError(f"{what}: not within {timeout:g} s")
    return time.monotonic() - started


def settle(check: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Ask ``check()`` every ``interval`` seconds until true or ``timeout``; whether it held.

    For figures measured either way once things have had time to settle
    (descriptors a closed connection still holds, say): the caller asserts
    on what it measures, with its own tolerance.
    """
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            return False
        time.sleep(interval)
    return True
