"""`ThreadResolver`: host names to addresses (A/AAAA), for the registry and the proxy.

``getaddrinfo`` runs in a thread pool of the resolver's own (``threads``
threads), never in the reactor's: that one also runs work a client can queue
(password checks), and a flood there must not time out a reload's look-ups.
Each resolver is bounded three ways: a lookup that takes longer than
``timeout`` fails, at most ``max_pending`` look-ups are in the pool at once
(counting those given up on that still hold a thread; a request for one more
fails at once instead of queueing), and answers (and failures, for a shorter
time) are kept in a cache of at most ``cache_size`` names. Concurrent
requests for one name share one lookup. IP literals never reach the resolver.
The registry and the proxy each have their own resolver, so traffic that
makes the proxy look names up cannot fill the registry's queue.

RFC 3263 NAPTR and SRV look-ups are not done: a name is looked up for A and
AAAA records and the port comes from the URI or the transport's default.
"""

from __future__ import annotations

import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

#: Seconds one lookup may take.
RESOLVE_TIMEOUT: Final = 5.0
#: Names looked up at the same time, at most.
MAX_PENDING: Final = 32
#: Longest host name looked up (RFC 1035: 253 characters in text form).
MAX_NAME: Final = 253
#: Threads of a resolver's own pool.
RESOLVE_THREADS: Final = 4
#: Names kept in the cache, at most.
CACHE_SIZE: Final = 1024
#: Seconds an answer is kept (getaddrinfo gives no TTL).
CACHE_SECONDS: Final = 60.0
#: Seconds a failed lookup is remembered.
FAILURE_SECONDS: Final = 5.0


class ResolveError(Exception):
    """A host name that could not be turned into addresses; ``reason`` says why."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class IResolve(Protocol):
    """What the proxy needs: a name to its addresses, IPv4 and IPv6, in order."""

    def resolve(self, host: str) -> Deferred[list[str]]:
        """Addresses of ``host``; fails with `ResolveError`."""


def lookup_addresses(host: str) -> list[str]:
    """Blocking A/AAAA lookup of ``host``: distinct addresses in getaddrinfo order."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


#: Runs a blocking lookup of a name off the reactor thread.
LookupRunner = Callable[[Callable[[str], list[str]], str], "Deferred[list[str]]"]


class ThreadResolver:
    """`IResolve` with ``getaddrinfo`` in a thread pool of its own (see the module).

    ``run`` (tests) replaces the thread pool: it is called with the blocking
    lookup and the name and returns a Deferred of the addresses.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        timeout: float = RESOLVE_TIMEOUT,
        max_pending: int = MAX_PENDING,
        cache_size: int = CACHE_SIZE,
        cache_seconds: float = CACHE_SECONDS,
        failure_seconds: float = FAILURE_SECONDS,
        lookup: Callable[[str], list[str]] = lookup_addresses,
        run: LookupRunner | None = None,
        threads: int = RESOLVE_THREADS,
        name: str = "sipsock-resolver",
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._max_pending = max_pending
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._failure_seconds = failure_seconds
        self._lookup = lookup
        self._run = run or self._in_thread
        self._cache: OrderedDict[str, tuple[float, list[str] | ResolveError]] = OrderedDict()
        self._pending: dict[str, list[Deferred[list[str]]]] = {}
        self._threads = threads
        self._name = name
        self._pool: ThreadPool | None = None
        #: Look-ups holding a pool thread or waiting for one (given-up ones too).
        self.busy = 0

    def resolve(self, host: str) -> Deferred[list[str]]:
        """Addresses of ``host`` (from the cache when fresh); fails with `ResolveError`."""
        key = host.lower().rstrip(".")
        if len(key) > MAX_NAME:  # never cached: the cache holds names of bounded size
            return defer.fail(ResolveError(host[:80], f"name longer than {MAX_NAME} characters"))
        now = self._reactor.seconds()
        cached = self._cache.get(key)
        if cached is not None:
            expires, answer = cached
            if expires > now:
                self._cache.move_to_end(key)
                if isinstance(answer, ResolveError):
                    return defer.fail(answer)
                return defer.succeed(list(answer))
            del self._cache[key]
        waiter: Deferred[list[str]] = Deferred()
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append(waiter)
            return waiter
        if max(len(self._pending), self.busy) >= self._max_pending:
            return defer.fail(
                ResolveError(host, f"too many lookups in progress ({self._max_pending})")
            )
        self._pending[key] = [waiter]
        lookup = self._run(self._lookup, key)
        lookup.addTimeout(self._timeout, self._reactor)
        lookup.addBoth(self._done, key, host)
        return waiter

    def _in_thread(self, lookup: Callable[[str], list[str]], host: str) -> Deferred[list[str]]:
        self.busy += 1

        def work() -> list[str]:
            try:
                return lookup(host)
            finally:  # the thread is free again, even for a look-up given up on
                self._reactor.callFromThread(self._freed)

        running: Deferred[list[str]] = threads.deferToThreadPool(
            self._reactor, self._thread_pool(), work
        )
        return running

    def _freed(self) -> None:
        self.busy -= 1

    def _thread_pool(self) -> ThreadPool:
        """The resolver's own pool, started at first use and stopped with the reactor."""
        if self._pool is None:
            pool = _DaemonThreadPool(minthreads=0, maxthreads=self._threads, name=self._name)
            pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
            self._pool = pool
        return self._pool

    def _stop_pool(self) -> None:
        """Stop the pool at shutdown; a look-up stuck in getaddrinfo does not hold it up
        (its thread is a daemon thread, left to end with the process)."""
        if self._pool is not None and self.busy == 0:
            self._pool.stop()

    def _done(self, result: list[str] | Failure, key: str, host: str) -> None:
        answer: list[str] | ResolveError
        if isinstance(result, Failure):
            answer = ResolveError(host, _reason(result, self._timeout))
            lifetime = self._failure_seconds
        elif not result:
            answer = ResolveError(host, "no address")
            lifetime = self._failure_seconds
        else:
            answer = result
            lifetime = self._cache_seconds
        self._remember(key, answer, lifetime)
        for waiter in self._pending.pop(key, []):
            if isinstance(answer, ResolveError):
                waiter.errback(answer)
            else:
                waiter.callback(list(answer))

    def _remember(self, key: str, answer: list[str] | ResolveError, lifetime: float) -> None:
        if lifetime <= 0 or self._cache_size <= 0:
            return
        self._cache[key] = (self._reactor.seconds() + lifetime, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class _DaemonThread(threading.Thread):
    """A thread that does not keep the process alive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daemon = True


class _DaemonThreadPool(ThreadPool):
    """A thread pool of `_DaemonThread`."""

    threadFactory = _DaemonThread


def _reason(failure: Failure, timeout: float) -> str:
    error = failure.value
    if isinstance(error, defer.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, socket.gaierror) and len(error.args) > 1:
        return str(error.args[1])
    return str(error) or type(error).__name__
