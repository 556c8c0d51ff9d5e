"""Host-name resolution runs in thread pools of its own, bounded, with real threads.

The reactor's thread pool also runs work a client can queue (the manhole's
password checks): a flood there must not make a reload's look-ups time out.
"""

from __future__ import annotations

import threading
import time

import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater

from sipsock.reloadhosts import make_thread_resolver
from sipsock.resolver import ResolveError, ThreadResolver


@pytest_twisted.ensureDeferred
async def test_registry_lookups_do_not_queue_behind_a_full_reactor_thread_pool() -> None:
    release = threading.Event()
    # Far more jobs than the reactor's 10 threads, as 150 manhole logins queue.
    blockers = [threads.deferToThread(release.wait, 30) for _ in range(150)]
    try:
        resolve = make_thread_resolver(reactor, timeout=3.0)
        started = time.monotonic()
        addresses = await resolve("localhost")  # before: TimeoutError after 3 s
        assert addresses and time.monotonic() - started < 3.0
    finally:
        release.set()
        await DeferredList(blockers)


@pytest_twisted.ensureDeferred
async def test_lookups_given_up_on_still_count_against_the_bound() -> None:
    release = threading.Event()

    def stuck(host: str) -> list[str]:
        release.wait(30)
        return ["192.0.2.1"]

    resolver = ThreadResolver(reactor, timeout=0.2, max_pending=2, threads=2, lookup=stuck)
    try:
        for name in ("a.example", "b.example"):
            d: Deferred[list[str]] = resolver.resolve(name)
            try:
                await d
            except ResolveError as error:
                assert "no answer within 0.2 s" in error.reason
        # Both threads are still stuck: a third name is refused at once, not queued.
        try:
            await resolver.resolve("c.example")
            raise AssertionError("a third look-up was queued")
        except ResolveError as error:
            assert "too many lookups in progress (2)" in error.reason, error
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while resolver.busy and time.monotonic() < deadline:
        await deferLater(reactor, 0.05, lambda: None)
    assert resolver.busy == 0
    assert await resolver.resolve("c.example") == ["192.0.2.1"]
