"""Automatic reload: the sockets table says it changed, the registry reloads.

``[sockets_mgm] auto_reload = true`` adds an `AutoReloader` service to the
daemon. Its change source is

* PostgreSQL: `PostgresListener`, one txpostgres connection of its own that
  LISTENs on the table's channel (`sipsock.db.notify`; the trigger comes from
  ``sipsock-db init --notify``). txpostgres reconnects a dead connection
  (`DeadConnectionDetector`) but does not LISTEN again: a recovery handler
  does, then signals a change, since NOTIFYs sent while it was away are lost;
* SQLite: `SQLitePoller`, which reads ``PRAGMA data_version`` every
  ``sqlite_poll_interval`` seconds on a connection of its own; the value moves
  when another connection commits (any table of the file). A file deleted,
  moved or replaced is noticed by its identity (device, inode) at each poll.

Each source also signals once when it starts watching (and after an outage),
so changes made between the daemon's first load and the LISTEN (or the first
poll) are caught up: one reload that usually finds nothing to do.

Change signals go through a `Debouncer`: the first one starts a timer of
``auto_reload_debounce`` seconds, the ones that follow fold into it, and a
signal that arrives during the reload it caused schedules one more. A burst of
100 changes gives one or two reloads. Reload errors are the registry's (it
logs them, counts them and keeps the running sockets); nothing here stops the
daemon. ``sockets_reload`` keeps working beside it (reloads are serialized).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection

from sipsock.config import SocketsMgmSettings
from sipsock.db.notify import (
    TRIGGER_NAME,
    listen_statement,
    notify_channel,
    trigger_exists_query,
)
from sipsock.db.postgres import _QuietConnection, connect_kwargs
from sipsock.db.sqlitefile import FileId, busy_timeout, existing_file_uri, file_id
from sipsock.db.store import StoreError

#: Reconnect delays of the LISTEN connection: 0.5 s, doubling, at most 5 s, forever.
RECONNECT_INITIAL: Final = 0.5
RECONNECT_FACTOR: Final = 2.0
RECONNECT_MAX: Final = 5.0


class Reloadable(Protocol):
    """What the reloader drives (`sipsock.registry.SocketRegistry`)."""

    def reload(self) -> Deferred[Any]:
        """Re-read the table and apply it."""
        ...


class ChangeSource(Protocol):
    """Something that calls its ``on_change`` when the table may have changed."""

    def start(self) -> None:
        """Begin watching; errors are logged and retried, never raised."""

    def stop(self) -> Deferred[None]:
        """Stop watching and release the connection."""


class Debouncer:
    """Folds change signals into few reloads (see the module).

    ``signals`` counts every signal, ``reloads`` the reloads it started.
    """

    log = Logger()

    def __init__(
        self, reload: Callable[[], Deferred[Any]], delay: float, clock: IReactorTime
    ) -> None:
        self._reload = reload
        self.delay = delay
        self._clock = clock
        self._call: IDelayedCall | None = None
        self._running = False
        self._again = False
        self._stopped = False
        self.signals = 0
        self.reloads = 0

    def changed(self, reason: str = "change") -> None:
        """The table may have changed: reload soon (once for many signals)."""
        if self._stopped:
            return
        self.signals += 1
        if self._running:
            self._again = True
        elif self._call is None:
            self.log.debug("{reason}: reloading in {delay:g} s", reason=reason, delay=self.delay)
            self._call = self._clock.callLater(self.delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._running = True
        self._again = False
        self.reloads += 1
        d = self._reload()
        d.addErrback(self._failed)
        d.addBoth(self._done)

    def _failed(self, failure: Failure) -> None:
        # The registry has logged the reason and counted the failure.
        self.log.debug("automatic reload failed: {reason}", reason=failure.getErrorMessage())

    def _done(self, _: object) -> None:
        self._running = False
        if self._again and not self._stopped:
            self._again = False
            self._call = self._clock.callLater(self.delay, self._fire)

    def stop(self) -> None:
        """No more reloads (a running one finishes)."""
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


def reconnect_delays() -> Iterator[float]:
    """Delays between reconnection attempts: now, then `RECONNECT_INITIAL` doubling up to
    `RECONNECT_MAX`, forever."""
    yield 0.0
    delay = RECONNECT_INITIAL
    while True:
        yield delay
        delay = min(delay * RECONNECT_FACTOR, RECONNECT_MAX)


class _ListenConnection(_QuietConnection):
    """The LISTEN connection: after `PostgresListener.stop`, reconnecting is a no-op."""

    stopped = False

    def connect(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        if self.stopped:
            return succeed(None)
        result: Deferred[Any] = super().connect(*args, **kwargs)
        return result

    def cursorFinished(self, cursor: Any) -> None:
        """After a query, parse a NOTIFY that arrived with its result.

        libpq may read a NOTIFY into its buffer together with the result of
        the LISTEN or of the trigger check; the socket then stays quiet, the
        reactor never calls `doRead`, and the change would wait for the next
        NOTIFY. One `poll()` moves it from the buffer into ``notifies``.
        """
        super().cursorFinished(cursor)
        if self._cursors or self._connection.closed:
            return  # another query is polling; its end brings us back here
        try:
            self._connection.poll()
        except reconnection.psycopg2.Error:
            return  # the connection died: doRead and the detector see to it
        self.checkForNotifies()


class PostgresListener:
    """LISTENs on the sockets table's channel; calls ``on_change`` for each NOTIFY.

    A lost connection is reopened by txpostgres's `DeadConnectionDetector`
    (delays: `reconnect_delays`); the recovery handler LISTENs again and calls
    ``on_change`` (what changed meanwhile was not notified).
    """

    log = Logger()

    def __init__(
        self,
        settings: SocketsMgmSettings,
        on_change: Callable[[str], None],
        reactor: Any,
        delays: Callable[[], Iterator[float]] = reconnect_delays,
    ) -> None:
        self._settings = settings
        self._on_change = on_change
        self._reactor = reactor
        self.channel = notify_channel(settings.tables)
        self._listen_sql = listen_statement(settings.tables)
        self._connkw = connect_kwargs(settings.db_url, settings.db_timeout)
        self._connkw["application_name"] = "sipsock-listen"
        self.detector = reconnection.DeadConnectionDetector(
            reconnectionIterator=delays, reactor=reactor
        )
        self.detector.addRecoveryHandler(self._recovered)
        self.connection = _ListenConnection(reactor=reactor, detector=self.detector)
        self.connection.addNotifyObserver(self._notified)
        self.listening = False
        self._stopped = False
        #: Whether the trigger check after the last LISTEN has its answer (and logged it).
        self.trigger_checked = False

    def start(self) -> None:
        """Connect and LISTEN; on failure, keep retrying in the background."""
        d: Deferred[Any] = self.connection.connect(**self._connkw)
        d.addCallback(lambda _: self._listen())
        d.addCallbacks(self._started, self._start_failed)

    def _started(self, _: object) -> None:
        self._listening(None)
        # What changed between the daemon's first load and the LISTEN was not notified.
        self._on_change("now listening (catching up)")

    def _listen(self) -> Deferred[Any]:
        result: Deferred[Any] = self.connection.runOperation(self._listen_sql)
        return result

    def _listening(self, _: object) -> None:
        self.listening = True
        self.trigger_checked = False
        self.log.info(
            "auto reload: listening on channel {channel} of {url}",
            channel=self.channel,
            url=self._settings.db_url.display(),
        )
        table = self._settings.tables.table
        check: Deferred[list[tuple[int]]] = self.connection.runQuery(
            trigger_exists_query(), (TRIGGER_NAME, table)
        )
        check.addCallback(self._check_trigger, table)
        check.addErrback(lambda _: None)  # a lost connection is the detector's business
        check.addCallback(self._trigger_done)

    def _trigger_done(self, _: object) -> None:
        self.trigger_checked = True

    def _check_trigger(self, rows: list[tuple[int]], table: str) -> None:
        if not rows:
            self.log.warn(
                "auto reload: table {table} has no NOTIFY trigger, changes go unnoticed: "
                'run "sipsock-db -c FILE init --notify"',
                table=table,
            )

    def _start_failed(self, failure: Failure) -> None:
        self.listening = False
        if self._stopped:
            return
        self.log.warn(
            "auto reload: cannot LISTEN on {url} ({reason}); retrying in the background",
            url=self._settings.db_url.display(),
            reason=_first_line(failure.getErrorMessage()),
        )
        # Not yet connected: hand the failure to the detector, which retries.
        if not self.detector.connectionIsDead:
            self.detector.checkForDeadConnection(failure)
            if not isinstance(failure.value, _DEATH):
                # An error the detector does not take for a dead connection
                # (the LISTEN itself failed): retry after a while ourselves.
                self._reactor.callLater(RECONNECT_MAX, self._retry)

    def _retry(self) -> None:
        if self._stopped or self.listening:
            return
        with contextlib.suppress(Exception):  # half-open: close may refuse
            self.connection.close()
        self.start()

    def _recovered(self) -> Deferred[None] | None:
        if self._stopped:
            return None
        self.log.info(
            "auto reload: connection to {url} back; listening again",
            url=self._settings.db_url.display(),
        )

        def listening(_: object) -> None:
            self._listening(None)
            self._on_change("reconnected (changes may have been missed)")

        d = self._listen()
        d.addCallbacks(listening, self._start_failed)
        return d.addCallback(lambda _: None)

    def _notified(self, notify: Any) -> None:
        if notify.channel == self.channel and not self._stopped:
            self._on_change(f"NOTIFY {notify.payload or ''}".strip())

    def stop(self) -> Deferred[None]:
        """Close the connection; no reconnection after this."""
        self._stopped = True
        self.listening = False
        self.connection.stopped = True
        self.detector.removeRecoveryHandler(self._recovered)
        if self.connection.pollable() is not None:
            with contextlib.suppress(Exception):  # already closed by the server
                self.connection.close()
        return succeed(None)


_DEATH: Final = reconnection.psycopg2.InterfaceError, reconnection.psycopg2.OperationalError


class SQLitePoller:
    """Reads ``PRAGMA data_version`` every ``interval`` s; calls ``on_change`` when it moves.

    Each poll first compares the file's identity (device, inode) with the one
    its connection opened: a file replaced (``mv``, restored from a backup) is
    reopened and signals a change, so does a file that vanished (the reload
    then fails saying so) or appeared.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        interval: float,
        on_change: Callable[[str], None],
        reactor: Any,
        timeout: float = 5.0,
    ) -> None:
        self._path = path
        self.interval = interval
        self._on_change = on_change
        self._reactor = reactor
        self._timeout = timeout
        self._pool: Any = None
        self._loop: task.LoopingCall | None = None
        self._version: int | None = None
        self._failing = False
        self._watched = False
        self._opened: FileId | None = None

    def start(self) -> None:
        """Poll from now on (the connection opens when the file is there)."""
        self._loop = task.LoopingCall(self._poll)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True)
        self.log.info(
            "auto reload: watching {path} every {interval:g} s",
            path=self._path,
            interval=self.interval,
        )

    def _poll(self) -> Deferred[None]:
        try:
            current = file_id(self._path)
        except StoreError as error:
            self._poll_failed(Failure(error))  # type: ignore[no-untyped-call]
            return succeed(None)
        if current != self._opened or self._pool is None:
            self._reopen(current)
        if self._pool is None:
            return succeed(None)
        d: Deferred[list[tuple[int]]] = self._pool.runQuery("PRAGMA data_version")
        return d.addCallbacks(self._polled, self._poll_failed)

    def _reopen(self, current: FileId | None) -> None:
        """Open the file now at the path (none: close); signal unless it is the first look."""
        first, self._watched = not self._watched, True
        had_file, self._opened = self._opened is not None, current
        self._close_pool()
        self._version = None  # the first poll of the new file signals "catching up"
        if current is None:
            if had_file or first:
                self.log.warn(
                    "auto reload: {path} does not exist (deleted or moved?); still watching",
                    path=self._path,
                )
            if had_file:
                self._on_change("database file removed")
            return
        if had_file:
            self.log.info("auto reload: {path} replaced; watching the new file", path=self._path)
        pool_class: Any = adbapi.ConnectionPool
        self._pool = pool_class(
            "sqlite3",
            existing_file_uri(self._path),
            uri=True,
            timeout=busy_timeout(self._timeout),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_reactor=self._reactor,
        )

    def _polled(self, rows: list[tuple[int]]) -> None:
        version = int(rows[0][0])
        if self._failing:
            self._failing = False
            self.log.info("auto reload: {path} readable again", path=self._path)
            self._version = version
            self._on_change("database readable again")
            return
        if self._version is None:
            # What changed before this baseline (first load, file replaced) is unseen.
            self._on_change("now watching (catching up)")
        elif version != self._version:
            self._on_change("data_version changed")
        self._version = version

    def _poll_failed(self, failure: Failure) -> None:
        if not self._failing:
            self._failing = True
            self.log.warn(
                "auto reload: cannot read {path}: {reason}; still trying",
                path=self._path,
                reason=failure.getErrorMessage(),
            )
        if not isinstance(failure.value, sqlite3.Error | StoreError):
            self.log.failure(
                "auto reload: unexpected error polling {path}", failure, path=self._path
            )

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def stop(self) -> Deferred[None]:
        """Stop polling and close the connection."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._close_pool()
        return succeed(None)


class AutoReloader(Service):
    """The automatic reload service: a change source feeding a `Debouncer`."""

    log = Logger()

    def __init__(
        self,
        registry: Reloadable,
        settings: SocketsMgmSettings,
        reactor: Any,
        source: ChangeSource | None = None,
    ) -> None:
        self.debouncer = Debouncer(registry.reload, settings.auto_reload_debounce, reactor)
        self.source = source or make_source(settings, self.debouncer.changed, reactor)

    @property
    def signals(self) -> int:
        """Change signals received (NOTIFYs, data_version moves, reconnections)."""
        return self.debouncer.signals

    @property
    def reloads(self) -> int:
        """Reloads started by change signals."""
        return self.debouncer.reloads

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.source.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self.debouncer.stop()
        return self.source.stop()


def make_source(
    settings: SocketsMgmSettings, on_change: Callable[[str], None], reactor: Any
) -> ChangeSource:
    """The change source for ``db_url``: LISTEN (PostgreSQL) or polling (SQLite)."""
    url = settings.db_url
    if url.scheme == "postgres":
        return PostgresListener(settings, on_change, reactor)
    if url.scheme == "sqlite":
        assert url.path is not None
        return SQLitePoller(
            url.path, settings.sqlite_poll_interval, on_change, reactor, settings.db_timeout
        )
    raise ValueError(f"auto_reload is not available for {url.scheme}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
