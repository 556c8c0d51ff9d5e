"""Statistics: what the daemon counts, named the OpenSIPS way and rendered for Prometheus.

A statistic is ``group:name`` like OpenSIPS's (``sockets_mgm:reloads``). The
groups:

* ``sockets`` - totals over every socket, static and dynamic;
* one group per socket, named as ``sockets_list`` names it
  (``udp:127.0.0.1:5060:received``): the socket's `SocketCounters`
  (messages received and sent, bytes in and out, parse errors, drops, open
  stream connections, failed TLS/WebSocket handshakes, and the hits of each
  limit: ``limit_oversize``, ``limit_connections``, ``limit_header_timeout``,
  ``limit_send_buffer``, ``limit_outbound``; in Prometheus one family
  ``sipsock_socket_limit_hits_total`` with a ``limit`` label). A socket that
  is removed and added again starts from zero;
* ``sockets_mgm`` - reloads, failed reloads, sockets by state, the rows
  rejected and sockets failed by the last completed reload (gauges, for
  alerts), the reload duration (a histogram), and with ``auto_reload`` the
  change signals received and the reloads they caused;
* ``workers`` - per UDP worker (``dynamic_1_handled``): messages handled and
  restarts; per pool its workers by state (``dynamic_workers_ready``) and its
  size (``dynamic_size``); with an auto-scaling profile its load
  (``dynamic_load``, percent), its changes of size (``dynamic_scaled_up``)
  and its last decision (``dynamic_decision``, labelled by action and code);
* ``mi`` - MI requests and failed requests by command (``sockets_reload_requests``).

The rules (which statistics a name selects, the Prometheus text) are pure
functions of a list of `Stat`, in `sipsock.statvalues`; `Statistics` collects
that list from the running daemon. Values shown by the MI can be reset (``reset_statistics``)
without touching the counters themselves, so ``/metrics`` stays monotonic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.statvalues import (
    HistogramLike,
    ReportLike,
    Stat,
    histogram_stats,
    mi_stats,
    pool_stats,
    render_prometheus,
    scaling_stats,
    socket_stats,
    totals,
    worker_stats,
)

#: Seconds to wait for the UDP workers' fresh counters before answering with the last ones.
REFRESH_TIMEOUT: Final = 1.0


class MICounts(Protocol):
    """What the statistics read from the MI `sipsock.mi.commands.CommandTable`."""

    @property
    def requests(self) -> dict[str, int]: ...

    @property
    def failures(self) -> dict[str, int]: ...


class StatsRegistry(Protocol):
    """What the statistics read from the `sipsock.registry.SocketRegistry`."""

    reloads: int
    failed_reloads: int

    @property
    def last_report(self) -> ReportLike | None: ...

    @property
    def reload_seconds(self) -> HistogramLike: ...

    @property
    def entries(self) -> Sequence[Any]: ...

    @property
    def static_listeners(self) -> Sequence[Any]: ...


class StatsPool(Protocol):
    """What the statistics read from a `sipsock.workers.UdpWorkerPool`."""

    def process_rows(self) -> list[dict[str, Any]]: ...

    def refresh(self) -> Deferred[None]: ...


class ChangeCounter(Protocol):
    """What the statistics read from an automatic reloader (`sipsock.autoreload`)."""

    @property
    def signals(self) -> int: ...

    @property
    def reloads(self) -> int: ...


class Statistics:
    """Collects the daemon's statistics; the MI and ``/metrics`` read them here.

    ``reset`` remembers the current value of incremental statistics as a
    baseline that the MI answers subtract; Prometheus always gets the raw,
    monotonic counters.
    """

    log = Logger()

    def __init__(
        self,
        registry: StatsRegistry,
        *,
        pools: Sequence[StatsPool] = (),
        clock: IReactorTime | None = None,
        started_at: float | None = None,
        refresh_timeout: float = REFRESH_TIMEOUT,
    ) -> None:
        self.registry = registry
        self.pools = list(pools)
        self.clock = clock
        self.started_at = started_at
        self.refresh_timeout = refresh_timeout
        #: Set by the daemon when ``auto_reload`` is on.
        self.auto_reload: ChangeCounter | None = None
        #: Set when the MI commands are registered (`sipsock.mi.statistics`).
        self.mi: MICounts | None = None
        self._baseline: dict[str, float] = {}

    def snapshot(self) -> list[Stat]:
        """Every statistic now (worker counters as of their last refresh)."""
        per_socket: list[Stat] = []
        for listener in self.registry.static_listeners:
            per_socket += socket_stats(listener.sdef, listener.counters, kind="static", slot=None)
        entries = list(self.registry.entries)
        for entry in entries:
            if entry.listener is not None:
                per_socket += socket_stats(
                    entry.sdef, entry.listener.counters, kind="dynamic", slot=entry.slot
                )
        stats = totals(per_socket) + self._registry_stats(entries) + per_socket
        for pool in self.pools:
            rows = pool.process_rows()
            stats += pool_stats(rows) + scaling_stats(rows) + worker_stats(rows)
        if self.mi is not None:
            stats += mi_stats(self.mi.requests, self.mi.failures)
        return stats

    def collect(self) -> Deferred[list[Stat]]:
        """Fresh counters from the UDP workers (waiting at most ``refresh_timeout``), then
        `snapshot`."""
        if not self.pools or self.clock is None:
            return succeed(self.snapshot())
        return Deferred.fromCoroutine(self._collect())

    async def _collect(self) -> list[Stat]:
        assert self.clock is not None
        # Wait for the workers' answers, or the timeout: never cancel their calls
        # (an AMP answer arriving for a cancelled call would be an error).
        finished: Deferred[None] = Deferred()

        def fire(result: object) -> None:
            if not finished.called:
                finished.callback(None)
            if isinstance(result, Failure):
                self.log.debug("worker statistics not refreshed: {reason}", reason=result.value)

        gatherResults([pool.refresh() for pool in self.pools], consumeErrors=True).addBoth(fire)
        timer = self.clock.callLater(self.refresh_timeout, fire, None)
        await finished  # stale numbers are better than none
        if timer.active():
            timer.cancel()
        return self.snapshot()

    def _registry_stats(self, entries: Sequence[Any]) -> list[Stat]:
        registry = self.registry
        open_count = sum(1 for e in entries if e.listener is not None)
        static_count = len(registry.static_listeners)
        states = (("open", open_count), ("error", len(entries) - open_count))
        result = [
            Stat(
                "sockets_mgm",
                "reloads",
                registry.reloads,
                metric="reloads",
                help="Reloads of the sockets table that completed",
            ),
            Stat(
                "sockets_mgm",
                "reload_failures",
                registry.failed_reloads,
                metric="reload_failures",
                help="Reloads that failed (database unavailable, table missing)",
            ),
        ]
        for state, count in states:
            result.append(
                Stat(
                    "sockets_mgm",
                    f"sockets_{state}",
                    count,
                    incremental=False,
                    metric="dynamic_sockets",
                    labels=(("state", state),),
                    help="Dynamic sockets by state",
                )
            )
        last = registry.last_report
        for name, count, text in (
            (
                "rejected_rows",
                len(last.rejected) if last is not None else 0,
                "Rows the last completed reload rejected (bad value, no free slot, conflict)",
            ),
            (
                "failed_sockets",
                len(last.failed) if last is not None else 0,
                "Sockets the last completed reload could not open or update",
            ),
        ):
            result.append(
                Stat(
                    "sockets_mgm",
                    name,
                    count,
                    incremental=False,
                    metric=f"reload_{name}",
                    help=text,
                )
            )
        result += histogram_stats(
            "sockets_mgm",
            "reload_seconds",
            registry.reload_seconds,
            metric="reload_duration_seconds",
            help="Duration of the completed reloads, in seconds",
        )
        result.append(
            Stat(
                "sockets_mgm",
                "sockets_static",
                static_count,
                incremental=False,
                metric="static_sockets",
                help="Static sockets from the configuration file",
            )
        )
        if self.auto_reload is not None:
            result.append(
                Stat(
                    "sockets_mgm",
                    "change_signals",
                    self.auto_reload.signals,
                    metric="change_signals",
                    help="Table changes signalled (NOTIFY or SQLite data_version)",
                )
            )
            result.append(
                Stat(
                    "sockets_mgm",
                    "auto_reloads",
                    self.auto_reload.reloads,
                    metric="auto_reloads",
                    help="Reloads started by a table change",
                )
            )
        if self.clock is not None and self.started_at is not None:
            result.append(
                Stat(
                    "core",
                    "uptime",
                    int(self.clock.seconds() - self.started_at),
                    incremental=False,
                    metric="uptime_seconds",
                    help="Seconds since the daemon started",
                )
            )
        return result

    # --- the MI view (with reset baselines) --------------------------------------

    def shown(self, stats: Iterable[Stat]) -> list[Stat]:
        """The statistics as the MI shows them: incremental ones minus their reset baseline."""
        result = []
        for stat in stats:
            base = self._baseline.get(stat.full_name)
            if base is not None and stat.incremental and stat.value >= base:
                result.append(replace(stat, value=stat.value - base))
            else:
                result.append(stat)
        return result

    def reset(self, stats: Iterable[Stat]) -> list[str]:
        """Start the MI view of these incremental statistics from zero; returns their names."""
        names = []
        for stat in stats:
            if stat.incremental:
                self._baseline[stat.full_name] = stat.value
                names.append(stat.full_name)
        return names


def metrics_text(statistics: Statistics) -> Callable[[], Deferred[str]]:
    """The ``GET /metrics`` body producer for the HTTP MI listener."""

    def produce() -> Deferred[str]:
        return statistics.collect().addCallback(render_prometheus)

    return produce
