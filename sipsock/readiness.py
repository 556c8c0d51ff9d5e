"""When the daemon is ready, and the one-line summary of its state.

The daemon is ready once its static sockets are bound and its MI listens
(both done before the service starts), the first load of the table has
finished (or failed and is being retried), and its UDP workers are ready (or
``workers_timeout`` seconds have passed: the summary then says how many are).
At that moment `Readiness` logs the one ``ready`` line and tells systemd
``READY=1``, with the same summary as ``STATUS=``. Afterwards it sends a new
``STATUS=`` whenever the summary changes (after a reload, a worker restart),
and ``WATCHDOG=1`` when systemd asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipsock.sdnotify import Notifier

#: Seconds between two looks at the daemon while it starts, and once it runs.
START_INTERVAL = 0.05
STATUS_INTERVAL = 1.0


@dataclass(frozen=True)
class DaemonState:
    """What the summary says: sockets, workers, MI endpoints, database."""

    static_open: int
    dynamic_open: int
    dynamic_failed: int
    workers_ready: int
    workers_total: int
    mi: tuple[str, ...]
    database: str
    #: "loading", "loaded" or "failed" (the first load; retried meanwhile).
    table: str

    @property
    def started(self) -> bool:
        """The first table load is over, one way or the other."""
        return self.table != "loading"

    @property
    def workers_all_ready(self) -> bool:
        return self.workers_ready == self.workers_total


def summary(state: DaemonState) -> str:
    """One line: ``sockets ...; workers ...; MI ...; database ...``."""
    sockets = f"sockets: {state.static_open} static, {state.dynamic_open} dynamic open"
    if state.dynamic_failed:
        sockets += f", {state.dynamic_failed} failed"
    table = {
        "loading": "loading the table",
        "loaded": "table loaded",
        "failed": "table load failed, retrying",
    }.get(state.table, state.table)
    return (
        f"{sockets}; workers: {state.workers_ready}/{state.workers_total} ready; "
        f"MI: {', '.join(state.mi) or 'none'}; database: {state.database} ({table})"
    )


class Readiness:
    """Watches ``observe()`` from `start` until ready, then keeps ``STATUS=`` current."""

    log = Logger()

    def __init__(
        self,
        observe: Callable[[], DaemonState],
        notifier: Notifier,
        *,
        clock: Any,
        workers_timeout: float = 30.0,
    ) -> None:
        self._observe = observe
        self._notifier = notifier
        self._clock = clock
        self._workers_timeout = workers_timeout
        self._started_at = 0.0
        self._loop: LoopingCall | None = None
        self._watchdog: LoopingCall | None = None
        self.ready = False
        self.last_status: str | None = None

    def start(self) -> None:
        self._started_at = self._clock.seconds()
        self._run(self._check_ready, START_INTERVAL)
        if self._notifier.watchdog_usec:
            self._watchdog = LoopingCall(self._notifier.watchdog)
            self._watchdog.clock = self._clock
            self._watchdog.start(self._notifier.watchdog_usec / 2e6, now=True)

    def stop(self) -> None:
        """Tell systemd the daemon stops; no more status updates."""
        for loop in (self._loop, self._watchdog):
            if loop is not None and loop.running:
                loop.stop()
        self._loop = self._watchdog = None
        self._notifier.stopping()

    def _run(self, check: Callable[[], None], interval: float) -> None:
        self._loop = LoopingCall(check)
        self._loop.clock = self._clock
        self._loop.start(interval, now=True).addErrback(
            lambda failure: self.log.failure("daemon status", failure)
        )

    def _check_ready(self) -> None:
        state = self._observe()
        if not state.started:
            return
        waited = self._clock.seconds() - self._started_at
        if not state.workers_all_ready and waited < self._workers_timeout:
            return
        line = summary(state)
        self.ready = True
        self.last_status = line
        self.log.info(
            "ready: {summary}",
            summary=line,
            static_sockets=state.static_open,
            dynamic_sockets=state.dynamic_open,
            failed_sockets=state.dynamic_failed,
            workers_ready=state.workers_ready,
            workers=state.workers_total,
            mi=list(state.mi),
            database=state.database,
            table=state.table,
        )
        self._notifier.ready(line)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._notifier.enabled:  # keep STATUS= current; nobody to tell otherwise
            self._run(self._refresh_status, STATUS_INTERVAL)

    def _refresh_status(self) -> None:
        line = summary(self._observe())
        if line != self.last_status:
            self.last_status = line
            self._notifier.status(line)
