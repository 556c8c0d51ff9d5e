# mypy: disable-error-code="no-untyped-call"
"""The socket book of the control process and the workers' socket directory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.registry import SocketRegistry
from sipsock.seams import Listener, SocketCounters
from sipsock.sockdef import SocketDef, parse_row
from sipsock.testing import FakeListener, FakeStore
from sipsock.workers.directory import (
    BookEntry,
    RemoteSocket,
    SocketBook,
    TrackedListener,
    WorkerDirectory,
)


class Subscriber:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def announce(self, entry: BookEntry) -> Deferred[None]:
        self.events.append(("announce", entry))
        return defer.succeed(None)

    def announce_many(self, entries: list[BookEntry]) -> Deferred[None]:
        self.events.append(("announce_many", entries))
        return defer.succeed(None)

    def withdraw(self, name: str) -> Deferred[None]:
        self.events.append(("withdraw", name))
        return defer.succeed(None)

    def withdraw_many(self, names: list[str]) -> Deferred[None]:
        self.events.append(("withdraw_many", names))
        return defer.succeed(None)


def row(text: str, tag: str | None = None) -> SocketDef:
    return parse_row(1, text, tag=tag)


def test_book_lists_static_sockets_first_and_tells_subscribers() -> None:
    book = SocketBook()
    subscriber = Subscriber()
    book.subscribe(subscriber)
    dynamic = FakeListener(row("udp:127.0.0.1:5070"), 3)
    static = FakeListener(row("tcp:127.0.0.1:5060"))
    book.put(dynamic)
    book.put(static, static=True)
    assert [e.name for e in book.entries()] == ["tcp:127.0.0.1:5060", "udp:127.0.0.1:5070"]
    assert book.find("udp:127.0.0.1:5070") is dynamic
    book.drop(dynamic)
    assert book.find("udp:127.0.0.1:5070") is None
    assert [kind for kind, _ in subscriber.events] == ["announce", "announce", "withdraw"]
    assert subscriber.events[0][1] == BookEntry(dynamic.sdef, 3, False)


def test_drop_many_forgets_the_recorded_ones_and_tells_each_subscriber_once() -> None:
    book = SocketBook()
    subscriber = Subscriber()
    book.subscribe(subscriber)
    first, second = (FakeListener(row(f"udp:127.0.0.1:{p}"), p) for p in (5070, 5071))
    kept, stale = FakeListener(row("tcp:127.0.0.1:5060")), FakeListener(row("udp:127.0.0.1:5071"))
    for listener in (first, second, kept):
        book.put(listener)
    subscriber.events.clear()
    done: list[Any] = []
    book.drop_many([first, stale, second]).addBoth(done.append)  # stale: not the one recorded
    assert done == [None]
    assert subscriber.events == [("withdraw_many", ["udp:127.0.0.1:5070", "udp:127.0.0.1:5071"])]
    assert [e.name for e in book.entries()] == ["tcp:127.0.0.1:5060"]
    assert book.find("udp:127.0.0.1:5071") is None and book.find("tcp:127.0.0.1:5060") is kept
    subscriber.events.clear()
    book.drop_many([first])
    assert subscriber.events == []  # nothing recorded: nobody told


def test_put_many_records_each_in_order_and_tells_each_subscriber_once() -> None:
    book = SocketBook()
    subscriber = Subscriber()
    book.subscribe(subscriber)
    static = FakeListener(row("udp:127.0.0.1:5060"))
    book.put(static, static=True)
    first = FakeListener(row("udp:127.0.0.1:5071"), 3)
    second = FakeListener(row("tcp:127.0.0.1:5070"), 4)
    done: list[Any] = []
    book.put_many([first, second]).addBoth(done.append)
    assert done == [None]
    entries = [BookEntry(first.sdef, 3, False), BookEntry(second.sdef, 4, False)]
    assert subscriber.events[1:] == [("announce_many", entries)]
    assert book.entries() == [BookEntry(static.sdef, None, True), *entries]
    assert book.find("tcp:127.0.0.1:5070") is second


def test_book_ignores_the_drop_of_a_listener_it_replaced() -> None:
    book = SocketBook()
    old = FakeListener(row("udp:127.0.0.1:5070"))
    new = FakeListener(row("udp:127.0.0.1:5070"))
    book.put(old)
    book.put(new)
    book.drop(old)
    assert book.find("udp:127.0.0.1:5070") is new


def test_book_send_reaches_the_named_socket_or_fails_with_a_reason() -> None:
    book = SocketBook()
    listener = FakeListener(row("tcp:127.0.0.1:5060"))
    book.put(listener)
    book.send("tcp:127.0.0.1:5060", b"hello", ("127.0.0.1", 9))
    assert listener.sent == [(b"hello", ("127.0.0.1", 9))]
    failures: list[Any] = []
    book.send("tcp:127.0.0.1:1", b"x", ("127.0.0.1", 9)).addErrback(failures.append)
    assert "socket tcp:127.0.0.1:1 is not open" in failures[0].getErrorMessage()


def test_a_tracked_listener_announces_updates_and_withdraws_before_closing() -> None:
    book = SocketBook()
    subscriber = Subscriber()
    book.subscribe(subscriber)
    inner = FakeListener(row("tcp:127.0.0.1:5060", tag="a"), 1, fd=42)
    tracked: list[Listener] = []
    book.track(inner).addCallback(tracked.append)
    [listener] = tracked
    assert isinstance(listener, TrackedListener)
    assert listener.fd == 42  # an attribute of the inner listener only
    assert listener.fileno() == 42
    listener.update(row("tcp:127.0.0.1:5060", tag="b"))
    assert inner.sdef.tag == "b"
    assert book.entries()[0].sdef.tag == "b"
    listener.stop()
    assert inner.stopped
    assert book.entries() == []
    assert [kind for kind, _ in subscriber.events] == ["announce", "announce", "withdraw"]


class Relay:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, bytes, tuple[str, int]]] = []
        self.fail = fail

    def __call__(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        self.calls.append((name, data, peer))
        if self.fail:
            return defer.fail(ConnectionError("control process gone"))
        return defer.succeed(None)


def directory_with(relay: Relay) -> WorkerDirectory:
    directory = WorkerDirectory(relay)
    directory.announce(BookEntry(row("udp:127.0.0.1:5070", tag="edge"), 0, False))
    directory.announce(BookEntry(row("tcp:127.0.0.1:5071", tag="edge"), 1, False))
    directory.announce(BookEntry(row("tls:127.0.0.1:5061", tag="core"), None, True))
    return directory


def test_worker_directory_prefers_static_then_held_sockets() -> None:
    relay = Relay()
    directory = directory_with(relay)
    held = FakeListener(row("udp:127.0.0.1:5070", tag="edge"), 0)
    directory.hold(held)
    assert directory.names() == ["tls:127.0.0.1:5061", "udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]
    assert directory.by_tag("edge") is held
    assert directory.by_slot(0) is held
    assert directory.first("udp") is held
    remote = directory.by_tag("core")
    assert isinstance(remote, RemoteSocket)
    assert remote.sdef.proto == "tls"
    assert remote.fileno() == -1


def test_worker_directory_sends_through_the_control_process_for_other_sockets() -> None:
    relay = Relay()
    directory = directory_with(relay)
    tcp = directory.first("tcp")
    assert tcp is not None
    tcp.send(b"INVITE", ("192.0.2.1", 5060))
    assert relay.calls == [("tcp:127.0.0.1:5071", b"INVITE", ("192.0.2.1", 5060))]
    assert tcp.counters.sent == 1
    assert directory.by_slot(1) is not None
    assert directory.by_slot(1).counters.sent == 1  # type: ignore[union-attr]


def test_a_failed_relay_is_counted_and_reaches_the_application() -> None:
    directory = directory_with(Relay(fail=True))
    tcp = directory.first("tcp")
    assert tcp is not None
    errors: list[Any] = []
    tcp.send(b"x", ("192.0.2.1", 5060)).addErrback(errors.append)
    assert "control process gone" in errors[0].getErrorMessage()
    assert tcp.counters.drops == 1


def test_withdrawn_and_released_sockets_are_not_found() -> None:
    directory = directory_with(Relay())
    held = FakeListener(row("udp:127.0.0.1:5070", tag="edge"), 0)
    directory.hold(held)
    directory.let_go(held)
    directory.withdraw("udp:127.0.0.1:5070")
    assert directory.by_slot(0) is None
    assert isinstance(directory.by_tag("edge"), RemoteSocket)  # the TCP one
    directory.withdraw("tcp:127.0.0.1:5071")
    assert directory.by_tag("edge") is None


def test_a_held_socket_is_found_before_its_announcement() -> None:
    directory = WorkerDirectory(Relay())
    held = FakeListener(row("udp:127.0.0.1:5070", tag="fresh"), 4)
    directory.hold(held)
    assert directory.by_tag("fresh") is held
    assert directory.by_slot(4) is held


def test_a_remote_socket_is_not_this_process_to_change() -> None:
    remote = RemoteSocket(
        BookEntry(row("tcp:127.0.0.1:5060"), None, True), Relay(), SocketCounters()
    )
    with pytest.raises(ValueError, match="not held by this process"):
        remote.update(row("tcp:127.0.0.1:5060", tag="x"))
    errors: list[Any] = []
    remote.stop().addErrback(errors.append)
    assert errors


class Forward:
    """Passes the book's changes on to a worker's directory, as a pool does."""

    def __init__(self, directory: WorkerDirectory) -> None:
        self.directory = directory

    def announce(self, entry: BookEntry) -> Deferred[None]:
        self.directory.announce(entry)
        return defer.succeed(None)

    def announce_many(self, entries: list[BookEntry]) -> Deferred[None]:
        for entry in entries:
            self.directory.announce(entry)
        return defer.succeed(None)

    def withdraw(self, name: str) -> Deferred[None]:
        self.directory.withdraw(name)
        return defer.succeed(None)

    def withdraw_many(self, names: list[str]) -> Deferred[None]:
        for name in names:
            self.directory.withdraw(name)
        return defer.succeed(None)


def test_a_worker_picks_the_socket_the_control_process_picks_for_a_shared_tag() -> None:
    # Row 1 is UDP (open once every worker adopted it: later), row 2 TCP (open at once).
    store = FakeStore()
    store.add("udp:127.0.0.1:5070", tag="edge")
    store.add("tcp:127.0.0.1:5071", tag="edge")
    book = SocketBook()
    directory = WorkerDirectory(Relay())
    book.subscribe(Forward(directory))
    adopted: Deferred[None] = Deferred()

    def open_socket(sdef: SocketDef, slot: int | None) -> Deferred[Listener]:
        listener = FakeListener(sdef, slot)
        if sdef.proto == "udp":
            return adopted.addCallback(lambda _: book.put(listener)).addCallback(lambda _: listener)
        return book.track(listener)

    registry = SocketRegistry(store, open_socket, max_sockets=4, reactor=Clock())
    reloaded: list[Any] = []
    registry.reload().addBoth(reloaded.append)
    adopted.callback(None)
    assert reloaded and not isinstance(reloaded[0], Failure)
    assert [e.name for e in book.entries()] == ["tcp:127.0.0.1:5071", "udp:127.0.0.1:5070"]
    for look_up in (
        lambda where: where.by_tag("edge"),
        lambda where: where.first("udp"),
        lambda where: where.first("tcp"),
    ):
        control, worker = look_up(registry), look_up(directory)
        assert control is not None and worker is not None
        assert control.sdef.socket_text == worker.sdef.socket_text
    assert registry.by_tag("edge").sdef.socket_text == "udp:127.0.0.1:5070"  # type: ignore[union-attr]
    assert directory.names() == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]


def test_remembered_look_ups_follow_every_change() -> None:
    directory = WorkerDirectory(lambda *_: defer.succeed(None))
    held = FakeListener(parse_row(2, "udp:127.0.0.1:5070", tag="a"), 2)
    directory.hold(held)
    assert directory.by_tag("a") is held
    assert directory.by_tag("a") is held  # remembered
    assert directory.by_tag("b") is None
    # A socket announced later with tag b: found now.
    directory.announce(BookEntry(parse_row(3, "tcp:127.0.0.1:5071", tag="b"), 3, False))
    remote = directory.by_tag("b")
    assert isinstance(remote, RemoteSocket) and remote.slot == 3
    assert directory.first("tcp") is not None
    # The held socket's tag changes (an update holds it again): the old tag finds nothing.
    held.sdef = parse_row(2, "udp:127.0.0.1:5070", tag="c")
    directory.hold(held)
    assert directory.by_tag("a") is None
    assert directory.by_tag("c") is held
    assert directory.by_slot(2) is held
    directory.withdraw("tcp:127.0.0.1:5071")
    assert directory.by_tag("b") is None and directory.first("tcp") is None
    directory.let_go(held)
    assert directory.by_slot(2) is None and directory.by_tag("c") is None


def test_remembered_look_ups_are_bounded() -> None:
    directory = WorkerDirectory(lambda *_: defer.succeed(None))
    for number in range(1000):
        assert directory.by_tag(f"t{number}") is None
    assert len(directory._found) <= 256
