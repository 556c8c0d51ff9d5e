"""`PostgresListener`: the PostgreSQL change source of the automatic reload.

One txpostgres connection of its own LISTENs on the table's channel
(`sipsock.db.notify`; the trigger comes from ``sipsock-db init --notify``).
txpostgres reconnects a dead connection (`DeadConnectionDetector`) but does not
LISTEN again: a recovery handler does, then signals a change, since NOTIFYs
sent while it was away are lost. It signals once when it starts listening too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
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
from sipsock.db.postgres import QuietConnection, connect_kwargs
from sipsock.db.store import first_line

#: Reconnect delays of the LISTEN connection: 0.5 s, doubling, at most 5 s, forever.
RECONNECT_INITIAL: Final = 0.5
RECONNECT_FACTOR: Final = 2.0
RECONNECT_MAX: Final = 5.0


def reconnect_delays() -> Iterator[float]:
    """Delays between reconnection attempts: now, then `RECONNECT_INITIAL` doubling up to
    `RECONNECT_MAX`, forever."""
    yield 0.0
    delay = RECONNECT_INITIAL
    while True:
        yield delay
        delay = min(delay * RECONNECT_FACTOR, RECONNECT_MAX)


class _ListenConnection(QuietConnection):
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
            reason=first_line(failure.getErrorMessage()),
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
