"""The running daemon: the root of the service tree, its state, and how it says so.

Its children, in the order ``sipsock.tap`` adds them: the state lock, the
store, the UDP worker pools, the static sockets, the registry, the
auto-reloader, then the admin front ends. They start in that order (binding
first, at privileged start) and stop in reverse, each awaited: front ends,
reloader, registry (dynamic sockets), static sockets, pools (workers,
stopped or killed), store, lock. Readiness (the ``ready:`` line and
systemd's READY=1/STATUS=/STOPPING=1) starts once every child started.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock import __version__
from sipsock.buildinfo import sip_core, stale_sip_core
from sipsock.config import Settings
from sipsock.daemon.admin import AdminFrontEnd
from sipsock.daemon.service import OrderedMultiService
from sipsock.daemon.startup import StartupError, exit_at_start
from sipsock.manhole import mi_caller
from sipsock.mi import CommandTable, build_command_table
from sipsock.readiness import DaemonState, Readiness
from sipsock.registry import SocketRegistry
from sipsock.sdnotify import Notifier
from sipsock.stats import Statistics
from sipsock.transport.tls import TLSDomains
from sipsock.workers import UdpWorkerPool
from sipsock.workers.stream_pool import PooledTLS


class DaemonService(OrderedMultiService):
    """The daemon: its children, the MI command table and statistics they share."""

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        registry: SocketRegistry,
        pools: Sequence[UdpWorkerPool],
        *,
        reactor: Any,
        notifier: Notifier,
        tls: TLSDomains | PooledTLS | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.registry = registry
        self.pools = list(pools)
        self.reactor = reactor
        self.started_at = reactor.seconds()
        self.statistics = Statistics(
            registry, pools=self.pools, clock=reactor, started_at=self.started_at
        )
        self.commands: CommandTable = build_command_table(
            registry,
            clock=reactor,
            started_at=self.started_at,
            process_list=self.process_list,
            version=__version__,
            tls=tls,
            statistics=self.statistics,
            sip_core=sip_core(),
        )
        self.readiness = Readiness(self.state, notifier, clock=reactor)
        #: Set when twistd runs without ``-n``: it has forked by the time the
        #: children bind, and its first process waits for word from this one.
        self.daemonized = False

    def manhole_namespace(self) -> dict[str, Any]:
        """What a manhole shell finds in scope."""
        return {
            "registry": self.registry,
            "pools": self.pools,
            "settings": self.settings,
            "stats": self.statistics,
            "mi": mi_caller(self.commands.call),
        }

    def process_list(self) -> list[dict[str, Any]]:
        """The MI ``ps`` rows: this process, then each worker."""
        rows = [{"ID": 0, "PID": os.getpid(), "Type": "control: sockets, database, MI"}]
        for pool in self.pools:
            rows += [{"ID": len(rows) + i, **row} for i, row in enumerate(pool.process_rows())]
        return rows

    def state(self) -> DaemonState:
        """Sockets, workers, MI endpoints and database, for the ready line and STATUS=."""
        entries = self.registry.entries
        workers = [row for pool in self.pools for row in pool.process_rows()]
        if self.registry.loaded:
            table = "loaded"
        elif self.registry.failed_reloads:
            table = "failed"
        else:
            table = "loading"
        return DaemonState(
            static_open=len(self.registry.static_listeners),
            dynamic_open=sum(1 for entry in entries if entry.is_open),
            dynamic_failed=sum(1 for entry in entries if not entry.is_open),
            workers_ready=sum(1 for row in workers if row.get("State") == "ready"),
            workers_total=len(workers),
            mi=tuple(
                endpoint
                for child in self
                if isinstance(child, AdminFrontEnd)
                for endpoint in child.endpoints
            ),
            database=self.settings.sockets_mgm.db_url.display(),
            table=table,
        )

    def privilegedStartService(self) -> None:
        """Bind the static sockets and the admin front ends; a failure ends start-up."""
        try:
            super().privilegedStartService()
        except StartupError as error:
            if not self.daemonized:
                exit_at_start(str(error))
            # twistd sends an exception (never a SystemExit, which would leave its
            # first process waiting for ever) to the waiting process, which prints
            # it and exits 1; the log keeps the whole line.
            self.log.critical("sipsock cannot start: {reason}", reason=str(error))
            raise

    def startService(self) -> Deferred[None]:
        # Everything built so far lives as long as the daemon: keep it out of the
        # collector's full passes, which cost tens of milliseconds in a reload of
        # hundreds of sockets (bench/reload.py).
        gc.freeze()
        self.log.info("SIP core: {sip_core}", sip_core=sip_core())
        stale = stale_sip_core()
        if stale:
            self.log.warn(
                "SIP core: compiled modules older than their sources (edits not running): "
                "{stale}; rebuild or delete them",
                stale=", ".join(stale),
            )
        starting = super().startService()
        # A child that fails while twistd starts the tree ends start-up as an
        # exception there would (exit status 1); one that fails later stops the daemon.
        during_call: list[Failure] = []
        calling = True

        def failed(failure: Failure) -> None:
            if calling:
                during_call.append(failure)
            else:
                self._start_failed(failure)

        starting.addCallbacks(lambda _: self.readiness.start(), failed)
        calling = False
        if during_call:
            during_call[0].raiseException()
        return starting

    def _start_failed(self, failure: Failure) -> None:
        self.log.failure("sipsock could not start", failure)
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self) -> Deferred[None]:
        self.readiness.stop()
        return super().stopService().addCallback(self._stopped)

    def _stopped(self, _: None) -> None:
        self.log.info("sipsock stopped")
        if not self.stop_failures:
            exit_zero_after_clean_stop(self.reactor)


def exit_zero_after_clean_stop(reactor: Any) -> None:
    """Let a stop by SIGTERM or SIGINT that closed everything end with status 0.

    twistd remembers the signal that stopped the reactor and raises it again
    once the reactor stopped, so the process ends "killed by SIGTERM" (status
    -15) however cleanly it stopped, which systemd and operators read as a
    failure. Twisted offers no public way to choose the exit status: this is
    the one place sipsock clears the remembered signal (``reactor._exitSignal``,
    Twisted's ``_ISupportsExitSignalCapturing``). A stop in which a child
    failed keeps it.
    """
    if getattr(reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
        reactor._exitSignal = None
