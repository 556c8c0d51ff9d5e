"""Automatic reload: the sockets table says it changed, the registry reloads.

``[sockets_mgm] auto_reload = true`` adds an `AutoReloader` service to the
daemon. Its change source is

* PostgreSQL: `sipsock.db.pglisten.PostgresListener`, one txpostgres connection of its own that
  LISTENs on the table's channel (`sipsock.db.notify`; the trigger comes from
  ``sipsock-db init --notify``). txpostgres reconnects a dead connection
  (`DeadConnectionDetector`) but does not LISTEN again: a recovery handler
  does, then signals a change, since NOTIFYs sent while it was away are lost;
* SQLite: `sipsock.db.sqlitepoll.SQLitePoller`, which reads ``PRAGMA data_version`` every
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

from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.config import SocketsMgmSettings
from sipsock.db.changes import ChangeSource, make_source


class Reloadable(Protocol):
    """What the reloader drives (`sipsock.registry.SocketRegistry`)."""

    def reload(self) -> Deferred[Any]:
        """Re-read the table and apply it."""
        ...


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
