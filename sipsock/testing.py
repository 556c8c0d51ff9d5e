"""In-memory fakes of sipsock's seams, for tests (the shape of txacme's ``testing.py``).

One fake per seam, kept in the package so that sipsock's own tests and the
tests of a SIP application (``[core] application``) share them:

* `FakeListener`: a `sipsock.transport.Listener` that records what is sent,
  updated and stopped, and fails sends on demand;
* `FakeDirectory`: a `sipsock.apps.SocketDirectory` over fake listeners, in
  the daemon's look-up order (`sipsock.socketindex`);
* `RecordingSink`: a `sipsock.transport.MessageSink` that keeps every message;
* `FakeStore`: a `sipsock.db.ISocketStore` over rows in memory, which can fail
  or hold a fetch;
* `FakeRegistry`: the `sipsock.registry.SocketRegistry` as the admin side sees
  it (MI, auto-reload, statistics): reloads you control, a fixed list.

Nothing here touches a socket, a database or the reactor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from sipsock.db import ISocketStore, SocketRow, StoreError
from sipsock.histogram import RELOAD_SECONDS_BUCKETS, Histogram
from sipsock.registry import SocketEntry
from sipsock.reloadplan import ReloadReport
from sipsock.seams import Listener, MessageSink, Origin, SocketCounters
from sipsock.sip import Request, Response, parse
from sipsock.sockdef import SocketDef
from sipsock.socketindex import Match, first_in_order, has_tag, in_slot, of_proto

Peer = tuple[str, int]


class FakeListener:
    """A `Listener` that records what is done to it.

    ``sent``: every (data, peer) sent; ``updates``: every definition applied;
    ``stopped``: whether `stop` was called. ``applying`` is what `update`
    returns (None: applied at once; a Deferred: applied elsewhere, later),
    ``stopping`` what `stop` returns (None: stopped at once). A send fails
    with ``fail`` when set, or with a refused connection to a peer in
    ``fail_to``.
    """

    def __init__(
        self,
        sdef: SocketDef,
        slot: int | None = None,
        counters: SocketCounters | None = None,
        *,
        fd: int = -1,
    ) -> None:
        self.sdef = sdef
        self.slot = slot
        self.counters = SocketCounters() if counters is None else counters
        self.fd = fd
        self.sent: list[tuple[bytes, Peer]] = []
        self.updates: list[SocketDef] = []
        self.stopped = False
        self.applying: Deferred[None] | None = None
        self.stopping: Deferred[None] | None = None
        self.fail: Exception | None = None
        self.fail_to: set[Peer] = set()

    def update(self, sdef: SocketDef) -> Deferred[None] | None:
        self.updates.append(sdef)
        self.sdef = sdef
        return self.applying

    def stop(self) -> Deferred[None]:
        self.stopped = True
        return self.stopping if self.stopping is not None else defer.succeed(None)

    def send(self, data: bytes, peer: Peer) -> Deferred[None]:
        if self.fail is not None or peer in self.fail_to:
            return defer.fail(self.fail or ConnectionRefusedError("Connection was refused"))
        self.sent.append((data, peer))
        return defer.succeed(None)

    def fileno(self) -> int:
        return self.fd

    def message(self, index: int = -1) -> Request | Response:
        """The ``index``-th message sent, parsed."""
        return parse(self.sent[index][0])


class FakeDirectory:
    """A `SocketDirectory` over listeners, in the daemon's look-up order.

    A listener without a slot counts as static (before every dynamic one,
    in the order given); the others go in table order (row id, then slot).
    """

    def __init__(self, *listeners: Listener) -> None:
        self.listeners = list(listeners)

    def by_tag(self, tag: str) -> Listener | None:
        return self._first(has_tag(tag))

    def by_slot(self, slot: int) -> Listener | None:
        return self._first(in_slot(slot))

    def first(self, proto: str) -> Listener | None:
        return self._first(of_proto(proto))

    def _first(self, match: Match) -> Listener | None:
        static = [lst for lst in self.listeners if lst.slot is None]
        dynamic = [lst for lst in self.listeners if lst.slot is not None]
        return first_in_order(static, dynamic, match)


class RecordingSink(MessageSink):
    """A `MessageSink` that keeps every message with its origin (and raises if ``fail``)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.messages: list[tuple[bytes, Origin]] = []
        self.fail = fail

    def message_received(self, data: bytes, origin: Origin) -> None:
        self.messages.append((data, origin))
        if self.fail:
            raise RuntimeError("application bug")


@implementer(ISocketStore)
class FakeStore:
    """An `ISocketStore` over ``rows`` in memory.

    ``error`` makes `fetch` fail with `StoreError`, ``version`` makes
    `check_version` fail with it; a ``gate`` Deferred holds the next fetch
    until it fires. ``fetches`` counts the fetches.
    """

    def __init__(self) -> None:
        self.rows: list[SocketRow] = []
        self.error: str | None = None
        self.version: str | None = None
        self.gate: Deferred[None] | None = None
        self.fetches = 0

    def add(self, socket: Any, **columns: Any) -> int:
        """Append a row (the next id) and return its id."""
        row_id = len(self.rows) + 1
        self.rows.append(SocketRow(row_id, socket, **columns))
        return row_id

    def check_version(self) -> Deferred[None]:
        if self.version is not None:
            return defer.fail(StoreError(self.version))
        return defer.succeed(None)

    def fetch(self) -> Deferred[list[SocketRow]]:
        self.fetches += 1
        if self.error is not None:
            return defer.fail(StoreError(self.error))
        rows = list(self.rows)
        if self.gate is not None:
            gate, self.gate = self.gate, None
            return gate.addCallback(lambda _: rows)
        return defer.succeed(rows)

    def read(self) -> Deferred[list[SocketRow]]:
        return self.check_version().addCallback(lambda _: self.fetch())

    def close(self) -> Deferred[None]:
        return defer.succeed(None)


class FakeRegistry:
    """The registry as the MI, the auto-reloader and the statistics see it.

    `reload` counts in ``reloads`` and gives ``report``; it fails with
    ``failure`` when set, and with ``hold`` it returns a Deferred kept in
    ``pending`` for the test to fire. `list_sockets` gives ``sockets`` when
    set, else the ``entries`` as `sockets_list` shows them. A reload that
    succeeds at once becomes ``last_report`` and is counted in
    ``reload_seconds``, as in the registry.
    """

    def __init__(
        self,
        sockets: list[dict[str, Any]] | None = None,
        *,
        entries: Iterable[SocketEntry] = (),
        static_listeners: Iterable[Listener] = (),
        report: ReloadReport | None = None,
        reloads: int = 0,
        failed_reloads: int = 0,
    ) -> None:
        self.sockets = sockets
        self.entries = list(entries)
        self.static_listeners = list(static_listeners)
        self.report = ReloadReport() if report is None else report
        self.reloads = reloads
        self.failed_reloads = failed_reloads
        self.last_report: ReloadReport | None = None
        self.reload_seconds = Histogram(RELOAD_SECONDS_BUCKETS)
        self.failure: Exception | None = None
        self.hold = False
        self.pending: list[Deferred[ReloadReport]] = []

    def reload(self) -> Deferred[ReloadReport]:
        self.reloads += 1
        if self.failure is not None:
            return defer.fail(self.failure)
        if self.hold:
            waiting: Deferred[ReloadReport] = Deferred()
            self.pending.append(waiting)
            return waiting
        self.last_report = self.report
        self.reload_seconds.observe(self.report.seconds)
        return defer.succeed(self.report)

    def list_sockets(self, details: bool = False) -> list[dict[str, Any]]:
        if self.sockets is not None:
            return self.sockets
        return [entry.as_mi(details) for entry in self.entries]
