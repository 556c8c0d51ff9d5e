"""SocketRegistry with an injected clock, store, opener and resolver."""

from __future__ import annotations

from typing import Any, cast

import pytest
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver
from twisted.python.failure import Failure

from sipsock.db import SocketRow, StoreError
from sipsock.deferreds import settle
from sipsock.registry import SocketRegistry
from sipsock.reloadhosts import ReloadHosts
from sipsock.resolver import ThreadResolver
from sipsock.sockdef import SocketDef, parse_row
from sipsock.testing import FakeListener, FakeStore
from sipsock.transport import ListenError


class Harness:
    #: Whether the registry is given a batch opener too (every test runs both ways).
    batch = False

    def __init__(self, max_sockets: int = 10, static: tuple[FakeListener, ...] = ()) -> None:
        self.clock = task.Clock()
        self.store = FakeStore()
        self.opened: dict[str, FakeListener] = {}
        self.refuse: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        self.opens = 0
        #: Sizes of the batches given to the batch opener.
        self.batches: list[int] = []
        #: The sockets of each batch given to the batch closer.
        self.closed: list[list[str]] = []
        self.registry = SocketRegistry(
            self.store,
            self.open,
            max_sockets=max_sockets,
            reactor=self.clock,
            static=list(static),
            resolver=self.resolve,
            open_many=self.open_many if self.batch else None,
            close_many=self.close_many if self.batch else None,
        )

    def open_many(self, sockets: Any) -> Deferred[list[Any]]:
        """A batch opener: each socket as `open` would, with one Deferred."""
        self.batches.append(len(sockets))
        results: list[Any] = []
        for sdef, slot in sockets:
            self.open(sdef, slot).addBoth(results.append)
        return defer.succeed(results)

    def close_many(self, listeners: Any) -> Deferred[list[Any]]:
        """A batch closer: each listener stopped, with one Deferred."""
        self.closed.append([listener.sdef.socket_text for listener in listeners])
        return settle([defer.maybeDeferred(listener.stop) for listener in listeners])

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


@pytest.fixture(autouse=True, params=[False, True], ids=["one-by-one", "batch"])
def batch_opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(Harness, "batch", request.param)
    return cast(bool, request.param)


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


def test_removed_sockets_are_closed_in_one_batch_even_when_the_closer_fails(
    batch_opener: bool,
) -> None:
    """A reload's removals go to the batch closer at once (a Deferred for them all,
    not one per socket); a closer that raises loses no entry and says so per socket."""
    h = Harness()
    for port in (5070, 5071, 5072, 5073):
        h.store.add(f"udp:127.0.0.1:{port}")
    h.reload()
    h.store.rows = h.store.rows[:1]
    report = h.reload()
    assert report.removed == [f"udp:127.0.0.1:{port}" for port in (5071, 5072, 5073)]
    assert h.closed == ([report.removed] if batch_opener else [])
    assert all(h.opened[name].stopped for name in report.removed)
    if not batch_opener:
        return
    h.store.add("udp:127.0.0.1:5074")
    h.reload()

    def broken(listeners: Any) -> Deferred[list[Any]]:
        raise RuntimeError("closer broken")

    h.registry._close_many = broken
    from twisted.logger import globalLogPublisher

    unclean: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "did not close cleanly" in event.get("log_format", ""):
            unclean.append(f"{event['socket']}: {event['reason']}")

    globalLogPublisher.addObserver(cast(ILogObserver, observe))
    try:
        h.store.rows = []
        report = h.reload()
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observe))
    assert report.removed == ["udp:127.0.0.1:5070", "udp:127.0.0.1:5074"]
    assert h.registry.entries == []
    assert unclean == [f"{name}: closer broken" for name in report.removed]


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


def test_a_name_that_fails_to_resolve_this_time_keeps_its_running_socket() -> None:
    h = Harness()
    h.names["sip.example.net"] = ["192.0.2.10"]
    row = h.store.add("udp:sip.example.net:5070", tag="a")
    assert h.reload().added == ["udp:192.0.2.10:5070"]
    listener = h.opened["udp:192.0.2.10:5070"]

    del h.names["sip.example.net"]  # the lookup times out, or DNS is down, this time
    report = h.reload()
    assert report.removed == [] and report.rejected == [], report
    assert report.kept == ["udp:192.0.2.10:5070"]
    assert h.registry.by_tag("a") is listener and not listener.stopped
    assert h.registry.list_sockets() == [{"socket": "udp:sip.example.net:5070", "tag": "a"}]

    h.store.rows = [SocketRow(row, "udp:sip.example.net:5070", tag="b")]  # tag changed
    report = h.reload()
    assert report.updated == ["udp:192.0.2.10:5070"] and report.removed == [], report
    assert h.registry.by_tag("b") is listener  # updated in place, on the last address

    h.store.rows = [SocketRow(row, "udp:other.example.net:5070", tag="b")]  # another name
    report = h.reload()
    assert report.removed == ["udp:192.0.2.10:5070"], report  # not the running row's socket
    assert "cannot resolve host name 'other.example.net'" in report.rejected[0].reason


def test_the_resolution_timeout_named_is_the_configured_one() -> None:
    h = Harness()
    h.store.add("udp:slow.example.net:5070")
    never: Any = lambda lookup, host: Deferred()  # noqa: E731  (a lookup that never answers)
    h.registry._hosts = ReloadHosts(ThreadResolver(h.clock, timeout=0.5, run=never).resolve)
    result: list[Any] = []
    h.registry.reload().addBoth(result.append)
    h.clock.advance(0.5)
    assert (
        result[0]
        .rejected[0]
        .reason.endswith("cannot resolve host name 'slow.example.net': no answer within 0.5 s")
    ), result  # before: "within 5 s" whatever the timeout


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


def test_stop_closes_dynamic_sockets_leaves_static_ones_and_cancels_retries() -> None:
    static = FakeListener(parse_row(None, "udp:127.0.0.1:5060"), None)
    h = Harness(static=(static,))
    h.store.add("udp:127.0.0.1:5070")
    h.reload()
    h.store.error = "down"
    h.registry.startService()
    h.registry.stopService()
    assert h.opened["udp:127.0.0.1:5070"].stopped
    assert not static.stopped  # StaticSockets, their owner, closes them after the registry
    assert h.registry.static_listeners == []
    assert not h.clock.getDelayedCalls()


def test_use_static_makes_the_static_sockets_known() -> None:
    h = Harness()
    static = FakeListener(parse_row(None, "udp:127.0.0.1:5060"), None)
    h.registry.use_static([static])
    assert h.registry.first("udp") is static


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


def test_a_socket_that_fails_to_open_is_retried_by_itself_with_growing_delays() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.store.add("tcp:127.0.0.1:5071")
    h.refuse["udp:127.0.0.1:5070"] = "port already in use"
    h.registry.startService()  # the first load: the UDP socket fails
    assert h.registry.list_sockets() == [
        {
            "socket": "udp:127.0.0.1:5070",
            "error": "port already in use (1 attempt(s); next retry in 2 s)",
        },
        {"socket": "tcp:127.0.0.1:5071"},
    ]
    h.clock.advance(2.0)
    assert h.opens == 3
    assert h.registry.list_sockets()[0]["error"] == (
        "port already in use (2 attempt(s); next retry in 4 s)"
    )
    h.clock.advance(3.9)
    assert h.opens == 3
    del h.refuse["udp:127.0.0.1:5070"]
    h.clock.advance(0.1)
    assert h.opens == 4
    assert h.registry.list_sockets()[0] == {"socket": "udp:127.0.0.1:5070"}
    assert h.registry.by_slot(0) is h.opened["udp:127.0.0.1:5070"]
    assert h.clock.getDelayedCalls() == []  # nothing left to retry
    assert h.reload().kept == ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5071"]
    h.registry.stopService()


def test_a_reload_while_a_socket_fails_tries_it_too_and_a_removed_row_stops_the_retries() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.refuse["udp:127.0.0.1:5070"] = "address not available"
    h.registry.startService()
    report = h.reload()  # a manual reload: one more attempt, the pace starts over from it
    assert [f.reason for f in report.failed] == ["address not available"]
    assert h.registry.list_sockets()[0]["error"] == (
        "address not available (2 attempt(s); next retry in 4 s)"
    )
    h.store.rows = []
    assert h.reload().removed == ["udp:127.0.0.1:5070"]
    assert h.clock.getDelayedCalls() == []
    h.registry.stopService()


def test_stopping_the_registry_cancels_the_retry() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.refuse["udp:127.0.0.1:5070"] = "port already in use"
    h.registry.startService()
    assert len(h.clock.getDelayedCalls()) == 1
    h.registry.stopService()
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(60)
    assert h.opens == 1


def test_a_rejected_row_is_logged_again_only_when_its_reason_changes() -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace", "").startswith("sipsock.registry"):
            events.append(event)

    def warned() -> list[Any]:
        found = [e.get("row") for e in events if e["log_format"] == "{reason}"]
        events.clear()
        return found

    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    bad = [h.store.add(f"sctp:127.0.0.1:{6000 + i}") for i in range(50)]
    globalLogPublisher.addObserver(cast(ILogObserver, observe))
    try:
        h.reload()
        assert warned() == bad
        for _ in range(3):  # the same table: the settled path and the full path
            report = h.reload()
            assert len(report.rejected) == 50
            assert warned() == []
        h.store.rows.append(h.store.rows.pop(0))  # row order changes: a full reload
        h.reload()
        assert warned() == []
        h.store.rows[1] = SocketRow(h.store.rows[1].id, "udp:bad host:1")
        h.reload()
        assert warned() == [bad[1]]
        h.store.rows[1] = SocketRow(h.store.rows[1].id, "udp:127.0.0.1:5071")
        h.reload()
        assert warned() == []
        h.store.rows[1] = SocketRow(h.store.rows[1].id, "sctp:127.0.0.1:6001")
        h.reload()
        assert warned() == [bad[1]]  # fixed, then broken again: news again
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observe))
    assert h.registry.last_report is not None
    assert len(h.registry.last_report.rejected) == 50
    assert h.registry.reload_seconds.count == h.registry.reloads


def test_the_reload_line_counts_the_rejections_not_logged_again() -> None:
    from twisted.logger import globalLogPublisher

    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "sockets reloaded" in event.get("log_format", ""):
            from twisted.logger import formatEvent

            lines.append(formatEvent(event))

    h = Harness()
    h.store.add("sctp:127.0.0.1:6000")
    h.store.add("sctp:127.0.0.1:6001")
    globalLogPublisher.addObserver(cast(ILogObserver, observe))
    try:
        h.reload()
        h.reload()
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observe))
    assert "2 rejected, 0 failed" in lines[0] and "as before" not in lines[0]
    assert lines[1].endswith("2 rejected, 0 failed (2 rejected as before, not logged again)")


def test_the_reload_line_of_a_reload_that_changed_nothing_is_a_debug_line() -> None:
    """Issue 19: the line of a no-change reload cost as much as the rest of it (500 sockets)."""
    from twisted.logger import globalLogPublisher

    levels: list[tuple[str, str]] = []

    def observe(event: dict[str, Any]) -> None:
        if "sockets reloaded" in event.get("log_format", ""):
            levels.append((event["log_level"].name, event["summary"]))

    h = Harness()
    h.store.add("udp:127.0.0.1:6000")
    globalLogPublisher.addObserver(cast(ILogObserver, observe))
    try:
        h.reload()  # the first load: info, even with nothing in it
        h.reload()  # nothing changed: debug
        h.store.add("sctp:127.0.0.1:6001")
        h.reload()  # a new rejected row: info
        h.reload()  # the same rejection again: debug
        h.store.rows[0] = SocketRow(1, "udp:127.0.0.1:6000", tag="t")
        h.reload()  # updated: info
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observe))
    assert [level for level, _ in levels] == ["info", "debug", "info", "debug", "info"], levels
    assert "1 updated" in levels[-1][1]


def test_a_socket_failing_at_every_reload_and_a_many_address_host_are_logged_once() -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace", "").startswith("sipsock.registry"):
            events.append(event)

    def logged(fragment: str) -> int:
        return sum(1 for e in events if fragment in e["log_format"])

    h = Harness()
    h.names["sip.example.net"] = ["192.0.2.10", "192.0.2.11"]
    h.store.add("udp:sip.example.net:5070")
    h.store.add("udp:127.0.0.1:5071")
    h.refuse["udp:127.0.0.1:5071"] = "port already in use"
    globalLogPublisher.addObserver(cast(ILogObserver, observe))
    try:
        for _ in range(4):
            report = h.reload()
            assert [f.socket for f in report.failed] == ["udp:127.0.0.1:5071"]
        assert logged("slot {slot} failed: {reason}") == 1
        assert logged("has {count} addresses") == 1
        h.refuse["udp:127.0.0.1:5071"] = "cannot assign requested address"
        h.names["sip.example.net"] = ["192.0.2.10", "192.0.2.12"]
        h.reload()
        assert logged("slot {slot} failed: {reason}") == 2
        assert logged("has {count} addresses") == 2
    finally:
        globalLogPublisher.removeObserver(cast(ILogObserver, observe))


def test_a_batch_opener_gets_every_socket_of_a_reload_in_one_call_and_its_failures_count(
    batch_opener: bool,
) -> None:
    h = Harness()
    for port in (5070, 5071, 5072):
        h.store.add(f"udp:127.0.0.1:{port}")
    h.refuse["udp:127.0.0.1:5071"] = "Address already in use"
    h.registry.startService()  # the initial load
    report = h.registry.last_report
    assert report is not None
    assert report.added == ["udp:127.0.0.1:5070", "udp:127.0.0.1:5072"]
    assert [(f.socket, f.reason) for f in report.failed] == [
        ("udp:127.0.0.1:5071", "Address already in use")
    ]
    assert [(e.sdef.port, e.slot, e.is_open, e.error) for e in h.registry.entries] == [
        (5070, 0, True, None),
        (5071, 1, False, "Address already in use"),
        (5072, 2, True, None),
    ]
    assert h.batches == ([3] if batch_opener else [])
    # The retry of the failed socket goes through the batch opener too.
    del h.refuse["udp:127.0.0.1:5071"]
    h.clock.advance(60)
    assert all(e.is_open for e in h.registry.entries)
    assert h.batches == ([3, 1] if batch_opener else [])
    h.registry.stopService()


def test_a_batch_opener_that_raises_fails_every_socket_of_the_batch_and_keeps_the_others() -> None:
    h = Harness()
    h.store.add("udp:127.0.0.1:5070")
    h.reload()

    def broken(sockets: Any) -> Deferred[list[Any]]:
        raise RuntimeError("opener broken")

    h.registry._open_many = broken
    h.store.add("udp:127.0.0.1:5071")
    h.store.add("udp:127.0.0.1:5072")
    report = h.reload()
    assert report.kept == ["udp:127.0.0.1:5070"]
    assert [(f.socket, f.reason) for f in report.failed] == [
        ("udp:127.0.0.1:5071", "opener broken"),
        ("udp:127.0.0.1:5072", "opener broken"),
    ]
    assert [e.is_open for e in h.registry.entries] == [True, False, False]
