"""`HostResolver`: host names to addresses (A/AAAA) for the SIP applications.

``getaddrinfo`` runs in the reactor's thread pool, bounded three ways: a
lookup that takes longer than ``timeout`` fails, at most ``max_pending``
different names are looked up at once (a request for one more fails at
once instead of queueing), and answers (and failures, for a shorter time)
are kept in a cache of at most ``cache_size`` names. Concurrent requests for
one name share one lookup. IP literals never reach the resolver.

RFC 3263 NAPTR and SRV look-ups are not done: a name is looked up for A and
AAAA records and the port comes from the URI or the transport's default.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: Seconds one lookup may take.
RESOLVE_TIMEOUT: Final = 5.0
#: Names looked up at the same time, at most.
MAX_PENDING: Final = 32
#: Longest host name looked up (RFC 1035: 253 characters in text form).
MAX_NAME: Final = 253
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
    """`IResolve` with ``getaddrinfo`` in the reactor's thread pool (see the module).

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
        if len(self._pending) >= self._max_pending:
            return defer.fail(
                ResolveError(host, f"too many lookups in progress ({self._max_pending})")
            )
        self._pending[key] = [waiter]
        lookup = self._run(self._lookup, key)
        lookup.addTimeout(self._timeout, self._reactor)
        lookup.addBoth(self._done, key, host)
        return waiter

    def _in_thread(self, lookup: Callable[[str], list[str]], host: str) -> Deferred[list[str]]:
        pool = self._reactor.getThreadPool()
        running: Deferred[list[str]] = threads.deferToThreadPool(self._reactor, pool, lookup, host)
        return running

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


def _reason(failure: Failure, timeout: float) -> str:
    error = failure.value
    if isinstance(error, defer.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, socket.gaierror) and len(error.args) > 1:
        return str(error.args[1])
    return str(error) or type(error).__name__
