"""OrderedMultiService: children start in order and stop in reverse, each awaited."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed

from sipsock.daemon.service import OrderedMultiService


class Child(Service):
    """Records its calls in ``journal``; its start/stop return the Deferreds given."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal
        self.starting: Deferred[None] = succeed(None)
        self.stopping: Deferred[None] = succeed(None)
        self.bind_error: Exception | None = None

    def privilegedStartService(self) -> None:
        self.journal.append(f"bind {self.name}")
        if self.bind_error is not None:
            raise self.bind_error

    def startService(self) -> Deferred[None]:
        super().startService()  # type: ignore[no-untyped-call]
        self.journal.append(f"start {self.name}")
        return self.starting

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self.journal.append(f"stop {self.name}")
        return self.stopping


def tree(*names: str) -> tuple[OrderedMultiService, list[Child], list[str]]:
    journal: list[str] = []
    parent = OrderedMultiService()
    children = [Child(name, journal) for name in names]
    for child in children:
        child.setServiceParent(parent)  # type: ignore[no-untyped-call]
    return parent, children, journal


def outcome(deferred: Deferred[Any]) -> list[Any]:
    seen: list[Any] = []
    deferred.addBoth(seen.append)
    return seen


def test_each_child_starts_only_once_the_one_before_it_started() -> None:
    parent, (first, _second), journal = tree("pools", "registry")
    first.starting = Deferred()
    started = outcome(parent.startService())
    assert journal == ["start pools"]
    assert not started
    first.starting.callback(None)
    assert journal == ["start pools", "start registry"]
    assert started == [None]
    assert parent.running


def test_children_stop_in_reverse_each_awaited() -> None:
    parent, (_first, second, third), journal = tree("pools", "registry", "mi")
    parent.startService()
    journal.clear()
    third.stopping, second.stopping = Deferred(), Deferred()
    stopped = outcome(parent.stopService())
    assert journal == ["stop mi"]
    third.stopping.callback(None)
    assert journal == ["stop mi", "stop registry"]
    assert not stopped
    second.stopping.callback(None)
    assert journal == ["stop mi", "stop registry", "stop pools"]
    assert stopped == [None]
    assert not parent.running


def test_a_child_that_fails_to_start_stops_the_ones_started_before_it() -> None:
    parent, (_first, second, _third), journal = tree("pools", "registry", "mi")
    second.starting = fail(RuntimeError("table gone"))
    started = outcome(parent.startService())
    assert journal == ["start pools", "start registry", "stop pools"]
    assert started[0].check(RuntimeError)
    assert not parent.running


def test_a_stop_that_fails_is_logged_and_the_next_child_stops_all_the_same() -> None:
    parent, (_first, second, _third), journal = tree("pools", "registry", "mi")
    parent.startService()
    journal.clear()
    second.stopping = fail(RuntimeError("socket stuck"))
    stopped = outcome(parent.stopService())
    assert journal == ["stop mi", "stop registry", "stop pools"]
    assert stopped == [None]
    assert parent.stop_failures == ["registry"]


def test_privileged_start_binds_in_order_before_any_start() -> None:
    parent, _children, journal = tree("static", "mi")
    parent.privilegedStartService()
    assert journal == ["bind static", "bind mi"]


def test_a_bind_that_fails_lets_the_earlier_children_go_and_raises() -> None:
    parent, (_first, _second, third, _fourth), journal = tree("pools", "static", "mi", "fifo")
    third.bind_error = OSError("port in use")
    with pytest.raises(OSError, match="port in use"):
        parent.privilegedStartService()
    assert journal == ["bind pools", "bind static", "bind mi", "stop static", "stop pools"]
