"""SocketRegistry with an injected clock, store, opener and resolver."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sipsock.db import SocketRow, StoreError
from sipsock.registry import SocketRegistry
from sipsock.sockdef import SocketDef, parse_row
from sipsock.testing import FakeListener, FakeStore
from sipsock.transport import ListenError


class Harness:
    def __init__(self, max_sockets: int = 10, static: tuple[FakeListener, ...] = ()) -> None:
        self.clock = task.Clock()
        self.store = FakeStore()
        self.opened: dict[str, FakeListener] = {}
        self.refuse: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        self.opens = 0
        self.registry = SocketRegistry(
            self.store,
            self.open,
            max_sockets=max_sockets,
            reactor=self.clock,
            static=list(static),
            resolver=self.resolve,
        )

    def open(self, sdef: SocketDef, slot: int | None) -> Deferred[Any]:
        self.opens += 1
        reason = self.refuse.get(sdef.socket_text)
        if reason is not None:
            return defer.fail(ListenError(sdef, reason))
        listener = FakeListener(sdef, slot)
        self.opened[sdef.socket_text] = listener
        return defer.succeed(listener)

    def resolve(self, host: str) -> Deferred[list[str]]:
        if host in self.names:
            return defer.succeed(self.names[host])
        return defer.fail(OSError("Name or service not known"))

    def reload(self) -> Any:
        result: list[Any] = []
        self.registry.reload().addBoth(result.append)
        assert result, "reload did not fire"
        if isinstance(result[0], Failure):
            result[0].raiseException()
        return result[0]


def test_reload_opens_rows_in_table_order_in_fifo_slots() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.store.add("tcp:127.0.0.1:5071", tag="b")
    report = h.reload()
    assert report.added == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]
    assert [(e.sdef.socket_text, e.slot) for e in h.registry.entries] == [
        ("udp:127.0.0.1:5070", 0),
        ("tcp:127.0.0.1:5071", 1),
    ]
    assert h.registry.by_tag("b") is h.opened["tcp:127.0.0.1:5071"]
    assert h.registry.by_slot(0) is h.opened["udp:127.0.0.1:5070"]
    assert h.registry.first("tcp") is h.opened["tcp:127.0.0.1:5071"]


def test_a_store_failure_fails_the_reload_and_keeps_every_socket() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.reload()
    h.store.error = "PostgreSQL unavailable"
    with pytest.raises(StoreError, match="PostgreSQL unavailable"):
        h.reload()
    assert h.registry.list_sockets() == [{"socket": "udp:127.0.0.1:5070"}]
    assert not h.opened["udp:127.0.0.1:5070"].stopped
    assert h.registry.failed_reloads == 1


def test_reloads_are_serialized() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.store.gate = Deferred()
    gate = h.store.gate
    first: list[Any] = []
    second: list[Any] = []
    h.registry.reload().addBoth(first.append)
    h.registry.reload().addBoth(second.append)
    assert h.store.fetches == 1
    assert (first, second) == ([], [])
    gate.callback(None)
    assert len(first) == len(second) == 1
    assert h.store.fetches == 2


def test_reload_fires_only_when_removed_sockets_are_closed() -> None:
    h = Harness()
    row = h.store.add("tcp:127.0.0.1:5070")
    h.reload()
    listener = h.opened["tcp:127.0.0.1:5070"]
    listener.stopping = Deferred()
    h.store.rows = [r for r in h.store.rows if r.id != row]
    fired: list[Any] = []
    h.registry.reload().addBoth(fired.append)
    assert listener.stopped
    assert fired == []
    listener.stopping.callback(None)
    assert len(fired) == 1


def test_in_place_update_keeps_listener_and_slot() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070", tag="a")
    h.reload()
    listener = h.opened["udp:127.0.0.1:5070"]
    h.store.rows = [SocketRow(1, "udp:127.0.0.1:5070", tag="b", tos="16")]
    report = h.reload()
    assert report.updated == ["udp:127.0.0.1:5070"]
    assert listener.updates == [parse_row(1, "udp:127.0.0.1:5070", tag="b", tos="16")]
    assert h.registry.entries[0].slot == 0
    assert h.registry.list_sockets() == [{"socket": "udp:127.0.0.1:5070", "tag": "b", "tos": 16}]


def test_a_socket_that_fails_to_open_is_listed_with_error_and_retried() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.refuse["udp:127.0.0.1:5070"] = "port already in use"
    report = h.reload()
    assert [(f.socket, f.reason) for f in report.failed] == [
        ("udp:127.0.0.1:5070", "port already in use")
    ]
    assert h.registry.list_sockets() == [
        {"socket": "udp:127.0.0.1:5070", "error": "port already in use"}
    ]
    assert h.registry.by_slot(0) is None
    del h.refuse["udp:127.0.0.1:5070"]
    assert h.reload().added == ["udp:127.0.0.1:5070"]
    assert h.registry.entries[0].slot == 0


def test_no_free_slot_is_a_rejection_naming_the_socket() -> None:
    h = Harness(max_sockets=1)
    h.store.add("udp:127.0.0.1:5070")
    second = h.store.add("udp:127.0.0.1:5071")
    report = h.reload()
    assert [(r.row_id, r.reason) for r in report.rejected] == [
        (second, f"row {second}: socket 'udp:127.0.0.1:5071': no free slot (max_sockets=1)")
    ]


def test_host_names_are_resolved_and_unresolvable_ones_rejected() -> None:
    h = Harness()
    h.names["sip.example.net"] = ["192.0.2.10", "192.0.2.11"]
    h.store.add("udp:sip.example.net:5070")
    bad = h.store.add("udp:nowhere.example.net:5070")
    report = h.reload()
    assert report.added == ["udp:192.0.2.10:5070"]
    assert h.registry.list_sockets() == [{"socket": "udp:sip.example.net:5070"}]
    assert report.rejected[0].row_id == bad
    assert "cannot resolve host name 'nowhere.example.net'" in report.rejected[0].reason


def test_initial_load_retries_with_backoff_until_it_works_and_stops_on_stop() -> None:
    h = Harness()
    h.store.error = "no such table"
    h.registry.startService()
    assert h.store.fetches == 1
    h.clock.advance(2)
    assert h.store.fetches == 2
    h.clock.advance(2)
    assert h.store.fetches == 2  # backoff doubled to 4 s
    h.clock.advance(2)
    assert h.store.fetches == 3
    h.store.error = None
    h.store.add("udp:127.0.0.1:5070")
    h.clock.advance(8)
    assert h.registry.loaded
    h.clock.advance(100)
    assert h.store.fetches == 4
    h.registry.stopService()
    assert h.opened["udp:127.0.0.1:5070"].stopped


def test_stop_closes_static_and_dynamic_sockets_and_cancels_retries() -> None:
    static = FakeListener(parse_row(None, "udp:127.0.0.1:5060"), None)
    h = Harness(static=(static,))
    h.store.error = "down"
    h.registry.startService()
    h.registry.stopService()
    assert static.stopped
    assert not h.clock.getDelayedCalls()


def test_a_row_on_a_static_address_is_rejected() -> None:
    static = FakeListener(parse_row(None, "udp:127.0.0.1:5060"), None)
    h = Harness(static=(static,))
    h.store.add("udp:127.0.0.1:5060")
    report = h.reload()
    assert "on the address of the static socket" in report.rejected[0].reason
    assert h.registry.by_tag("x") is None
    assert h.registry.first("udp") is static


def test_a_reload_waits_until_every_process_applied_an_update() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070", advertised="192.0.2.1")
    h.store.add("udp:127.0.0.1:5071", advertised="192.0.2.1")
    h.reload()
    first, second = h.opened["udp:127.0.0.1:5070"], h.opened["udp:127.0.0.1:5071"]
    first.applying, second.applying = Deferred(), Deferred()
    h.store.rows = [
        SocketRow(1, "udp:127.0.0.1:5070", advertised="192.0.2.2"),
        SocketRow(2, "udp:127.0.0.1:5071", advertised="192.0.2.2"),
    ]
    fired: list[Any] = []
    h.registry.reload().addBoth(fired.append)
    # Both updates were started at once; the reload waits for the slower one.
    assert [len(first.updates), len(second.updates)] == [1, 1]
    first.applying.callback(None)
    assert fired == []
    second.applying.callback(None)
    [report] = fired
    assert report.updated == ["udp:127.0.0.1:5070", "udp:127.0.0.1:5071"]


def test_an_update_that_fails_later_keeps_the_old_settings_and_is_reported() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070", tag="a")
    h.reload()
    listener = h.opened["udp:127.0.0.1:5070"]
    listener.applying = defer.fail(ListenError(listener.sdef, "Invalid argument"))
    h.store.rows = [SocketRow(1, "udp:127.0.0.1:5070", tag="b")]
    report = h.reload()
    assert [(f.socket, f.reason) for f in report.failed] == [
        ("udp:127.0.0.1:5070", "update failed: Invalid argument")
    ]
    assert report.updated == []
    assert h.registry.list_sockets() == [
        {"socket": "udp:127.0.0.1:5070", "tag": "a", "error": "update failed: Invalid argument"}
    ]
    listener.applying = None
    assert h.reload().updated == ["udp:127.0.0.1:5070"]  # the next reload tries again
    assert h.registry.list_sockets() == [{"socket": "udp:127.0.0.1:5070", "tag": "b"}]
    assert not listener.stopped


def test_a_reload_of_unchanged_rows_keeps_everything_without_opening_anything() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.store.add("tcp:127.0.0.1:5071", tag="b")
    bad = h.store.add("sctp:127.0.0.1:5072")
    h.reload()
    opens = h.opens
    for _ in range(3):
        report = h.reload()
        assert report.kept == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]
        assert (report.added, report.updated, report.removed, report.failed) == ([], [], [], [])
        assert [r.row_id for r in report.rejected] == [bad]
    assert h.opens == opens
    assert h.registry.reloads == 4
    # A change after unchanged reloads is seen at once.
    h.store.rows[0] = SocketRow(1, "udp:127.0.0.1:5070", tag="new")
    assert h.reload().updated == ["udp:127.0.0.1:5070"]
    assert h.reload().kept == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]


def test_unchanged_rows_with_a_failed_socket_or_a_host_name_are_worked_again() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.refuse["udp:127.0.0.1:5070"] = "port already in use"
    h.reload()
    h.reload()
    assert h.opens == 2  # retried: no shortcut while a socket failed
    h.names["sip.example.net"] = ["192.0.2.10"]
    h.store.rows = [SocketRow(1, "udp:sip.example.net:5070")]
    del h.refuse["udp:127.0.0.1:5070"]
    assert h.reload().added == ["udp:192.0.2.10:5070"]
    h.names["sip.example.net"] = ["192.0.2.20"]
    report = h.reload()  # same rows, but the name now resolves elsewhere
    assert report.added == ["udp:192.0.2.20:5070"]
    assert report.removed == ["udp:192.0.2.10:5070"]


def test_a_wrong_version_row_fails_the_reload_even_though_the_rows_were_read() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.store.version = "sockets table version row missing"
    with pytest.raises(StoreError, match="version row missing"):
        h.reload()
    assert h.registry.entries == []
    assert h.registry.failed_reloads == 1
