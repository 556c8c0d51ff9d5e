# mypy: disable-error-code="no-untyped-call"
"""The proxy's host-name resolver: bounded, cached, one lookup per name at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sipsock.apps.resolver import ResolveError, ThreadResolver, lookup_addresses


class Lookups:
    """Stands in for the thread pool: every lookup waits until the test answers it."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Deferred[list[str]]]] = []

    def run(self, lookup: Callable[[str], list[str]], host: str) -> Deferred[list[str]]:
        waiting: Deferred[list[str]] = Deferred()
        self.pending.append((host, waiting))
        return waiting

    def answer(self, result: list[str] | Exception) -> str:
        host, waiting = self.pending.pop(0)
        if isinstance(result, Exception):
            waiting.errback(Failure(result))
        else:
            waiting.callback(result)
        return host


def make(**options: Any) -> tuple[ThreadResolver, Lookups, MemoryReactorClock]:
    lookups = Lookups()
    reactor = MemoryReactorClock()
    return ThreadResolver(reactor, run=lookups.run, **options), lookups, reactor


def outcome(waiting: Deferred[list[str]]) -> Any:
    """The addresses, or the error, a resolve has fired with."""
    results: list[Any] = []
    waiting.addBoth(results.append)
    [result] = results
    return result.value if isinstance(result, Failure) else result


def test_answers_are_cached_until_they_expire() -> None:
    resolver, lookups, reactor = make(cache_seconds=60)
    first = resolver.resolve("uas.example")
    assert lookups.answer(["10.0.0.5"]) == "uas.example"
    assert outcome(first) == ["10.0.0.5"]
    assert outcome(resolver.resolve("UAS.example.")) == ["10.0.0.5"]
    assert lookups.pending == []
    reactor.advance(61)
    resolver.resolve("uas.example")
    assert len(lookups.pending) == 1


def test_concurrent_requests_for_one_name_share_one_lookup() -> None:
    resolver, lookups, _ = make()
    waits = [resolver.resolve("uas.example") for _ in range(3)]
    assert len(lookups.pending) == 1
    lookups.answer(["10.0.0.5", "2001:db8::5"])
    assert [outcome(w) for w in waits] == [["10.0.0.5", "2001:db8::5"]] * 3


def test_failures_are_remembered_briefly_and_name_the_host() -> None:
    resolver, lookups, reactor = make(failure_seconds=5)
    waiting = resolver.resolve("nowhere.invalid")
    lookups.answer(OSError("Name or service not known"))
    error = outcome(waiting)
    assert isinstance(error, ResolveError)
    assert str(error) == "nowhere.invalid: Name or service not known"
    assert isinstance(outcome(resolver.resolve("nowhere.invalid")), ResolveError)
    assert lookups.pending == []
    reactor.advance(6)
    resolver.resolve("nowhere.invalid")
    assert len(lookups.pending) == 1


def test_an_empty_answer_is_an_error() -> None:
    resolver, lookups, _ = make()
    waiting = resolver.resolve("empty.example")
    lookups.answer([])
    assert str(outcome(waiting)) == "empty.example: no address"


def test_a_slow_lookup_times_out() -> None:
    resolver, _, reactor = make(timeout=5)
    waiting = resolver.resolve("slow.example")
    reactor.advance(5.1)
    assert str(outcome(waiting)) == "slow.example: no answer within 5 s"


def test_lookups_in_progress_are_bounded() -> None:
    resolver, lookups, _ = make(max_pending=2)
    resolver.resolve("a.example")
    resolver.resolve("b.example")
    error = outcome(resolver.resolve("c.example"))
    assert str(error) == "c.example: too many lookups in progress (2)"
    lookups.answer(["10.0.0.1"])
    resolver.resolve("c.example")
    assert [host for host, _ in lookups.pending] == ["b.example", "c.example"]


def test_the_cache_is_bounded() -> None:
    resolver, lookups, _ = make(cache_size=2)
    for name in ("a.example", "b.example", "c.example"):
        resolver.resolve(name)
        lookups.answer(["10.0.0.1"])
    resolver.resolve("c.example")
    assert lookups.pending == []
    resolver.resolve("a.example")
    assert len(lookups.pending) == 1


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_the_real_lookup_finds_loopback(host: str) -> None:
    assert "127.0.0.1" in lookup_addresses(host)


def test_a_name_longer_than_dns_allows_fails_without_a_lookup_or_a_cache_entry() -> None:
    resolver, lookups, _ = make()
    error = outcome(resolver.resolve("a" * 60_000 + ".example"))
    assert isinstance(error, ResolveError)
    assert "longer than 253" in error.reason
    assert lookups.pending == []
    assert len(resolver._cache) == 0
