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
  restarts; per pool its workers by state (``dynamic_workers_ready``);
* ``mi`` - MI requests and failed requests by command (``sockets_reload_requests``).

The rules (which statistics a name selects, the Prometheus text) are pure
functions of a list of `Stat`; `Statistics` collects that list from the
running daemon. Values shown by the MI can be reset (``reset_statistics``)
without touching the counters themselves, so ``/metrics`` stays monotonic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.seams import SocketCounters
from sipsock.sockdef import SocketDef

#: Prefix of every Prometheus metric.
PREFIX: Final = "sipsock"
#: Seconds to wait for the UDP workers' fresh counters before answering with the last ones.
REFRESH_TIMEOUT: Final = 1.0

#: Counters that go up and down (Prometheus gauges, OpenSIPS "non-incremental").
GAUGE_COUNTERS: Final = frozenset({"connections"})

#: Prometheus family and help of each `SocketCounters` field.
_SOCKET_METRICS: Final[dict[str, tuple[str, str]]] = {
    "received": ("socket_messages_received", "SIP messages received on the socket"),
    "sent": ("socket_messages_sent", "SIP messages sent from the socket"),
    "replies_in": ("socket_replies_received", "SIP responses received on the socket"),
    "replies_out": ("socket_replies_sent", "SIP responses sent from the socket"),
    "bytes_in": ("socket_bytes_received", "Bytes received on the socket"),
    "bytes_out": ("socket_bytes_sent", "Bytes sent from the socket"),
    "parse_errors": ("socket_parse_errors", "Messages or streams that could not be parsed"),
    "drops": ("socket_drops", "Messages dropped (failed send, closed connection, app error)"),
    "connections": ("socket_connections", "Stream connections open now"),
    "handshake_failures": (
        "socket_handshake_failures",
        "Connections closed because their TLS or WebSocket handshake failed",
    ),
}
#: The ``limit_*`` counters share one Prometheus family, labelled by limit.
_LIMIT_METRIC: Final = (
    "socket_limit_hits",
    "Limit hits: oversize messages, refused connections, header timeouts, "
    "peers not reading, full outbound pool",
)
_LIMIT_PREFIX: Final = "limit_"
_METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class StatisticsError(Exception):
    """A statistics request that cannot be answered (no statistic matches)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Stat:
    """One statistic: its OpenSIPS name (``group:name``), value and Prometheus form.

    ``incremental`` counters only grow (Prometheus counters); the others are
    gauges. ``metric`` is the Prometheus family (without the ``sipsock_``
    prefix and the ``_total`` suffix), None for statistics that Prometheus
    users compute themselves (the ``sockets`` totals).
    """

    group: str
    name: str
    value: float
    incremental: bool = True
    metric: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    help: str = ""
    #: ``"histogram"`` for the samples of a histogram family (``sample`` is then
    #: ``_bucket``, ``_sum`` or ``_count``); None for a counter or gauge.
    kind: str | None = None
    sample: str = ""

    @property
    def full_name(self) -> str:
        """``group:name``, as the MI shows it."""
        return f"{self.group}:{self.name}"


# --- OpenSIPS's get_statistics / list_statistics / reset_statistics ------------------


def select(stats: Sequence[Stat], names: Iterable[str]) -> list[Stat]:
    """The statistics that ``names`` ask for, OpenSIPS's way.

    ``all`` is every statistic; ``group:`` every statistic of a group;
    ``group:name`` one statistic; a bare ``name`` the first statistic with
    that name in any group. Names are compared case-insensitively (OpenSIPS
    does). Raises `StatisticsError` when nothing matches ("Statistics Not
    Found", code 404 in OpenSIPS).
    """
    chosen: dict[str, Stat] = {}
    for raw in names:
        wanted = str(raw).strip().lower()
        if wanted == "all":
            matches = list(stats)
        elif len(wanted) > 1 and wanted.endswith(":"):
            group = wanted[:-1]
            matches = [s for s in stats if s.group.lower() == group]
        elif ":" in wanted:
            group, _, name = wanted.rpartition(":")
            matches = [s for s in stats if s.group.lower() == group and s.name.lower() == name]
        else:
            matches = [s for s in stats if s.name.lower() == wanted][:1]
        for stat in matches:
            chosen.setdefault(stat.full_name, stat)
    if not chosen:
        raise StatisticsError("Statistics Not Found")
    return list(chosen.values())


def as_values(stats: Iterable[Stat]) -> dict[str, int | float]:
    """``{"group:name": value}``, the answer of ``get_statistics``."""
    return {stat.full_name: _number(stat.value) for stat in stats}


def as_kinds(stats: Iterable[Stat]) -> dict[str, str]:
    """``{"group:name": "incremental" | "non-incremental"}``, the answer of ``list_statistics``."""
    return {
        stat.full_name: "incremental" if stat.incremental else "non-incremental" for stat in stats
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# --- Prometheus text format (0.0.4) ---------------------------------------------------


def render_prometheus(stats: Iterable[Stat]) -> str:
    """The Prometheus text exposition of the statistics that have a ``metric``.

    Counters are exposed as ``sipsock_<metric>_total``, gauges as
    ``sipsock_<metric>``; one ``# HELP`` and ``# TYPE`` line per family, the
    families in first-seen order, label values escaped.
    """
    families: dict[str, list[Stat]] = {}
    for stat in stats:
        if stat.metric is not None:
            families.setdefault(_family_name(stat), []).append(stat)
    lines: list[str] = []
    for name, members in families.items():
        first = members[0]
        lines.append(f"# HELP {name} {_escape_help(first.help or first.name)}")
        kind = first.kind or ("counter" if first.incremental else "gauge")
        lines.append(f"# TYPE {name} {kind}")
        for stat in members:
            lines.append(f"{name}{stat.sample}{_labels(stat.labels)} {_sample_value(stat.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _family_name(stat: Stat) -> str:
    assert stat.metric is not None
    counter = stat.incremental and stat.kind is None
    name = f"{PREFIX}_{stat.metric}" + ("_total" if counter else "")
    if not _METRIC_NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a Prometheus metric name")
    return name


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    parts = []
    for key, value in labels:
        if not _LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"{key!r} is not a Prometheus label name")
        parts.append(f'{key}="{_escape_label(value)}"')
    return "{" + ",".join(parts) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample_value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# --- building the list from the daemon's parts -----------------------------------------


def socket_stats(
    sdef: SocketDef, counters: SocketCounters, *, kind: str, slot: int | None
) -> list[Stat]:
    """The statistics of one socket: a group named after it, one stat per counter."""
    labels: list[tuple[str, str]] = [
        ("socket", sdef.socket_text),
        ("kind", kind),
        ("transport", sdef.proto),
    ]
    if slot is not None:
        labels.append(("slot", str(slot)))
    if sdef.tag:
        labels.append(("tag", sdef.tag))
    result = []
    for field in fields(counters):
        metric, text = _SOCKET_METRICS.get(field.name, (f"socket_{field.name}", field.name))
        extra: tuple[tuple[str, str], ...] = ()
        if field.name.startswith(_LIMIT_PREFIX):
            metric, text = _LIMIT_METRIC
            extra = (("limit", field.name[len(_LIMIT_PREFIX) :]),)
        result.append(
            Stat(
                sdef.socket_text,
                field.name,
                getattr(counters, field.name),
                incremental=field.name not in GAUGE_COUNTERS,
                metric=metric,
                labels=tuple(labels) + extra,
                help=text,
            )
        )
    return result


def totals(per_socket: Iterable[Stat]) -> list[Stat]:
    """The ``sockets`` group: each counter summed over every socket (MI only)."""
    sums: dict[str, Stat] = {}
    for stat in per_socket:
        known = sums.get(stat.name)
        value = stat.value + (known.value if known else 0)
        sums[stat.name] = Stat("sockets", stat.name, value, stat.incremental, help=stat.help)
    return list(sums.values())


def histogram_stats(
    group: str, name: str, histogram: HistogramLike, *, metric: str, help: str
) -> list[Stat]:
    """A histogram as statistics: ``name_le_<bound>`` per bucket, ``name_sum``, ``name_count``
    (in Prometheus one ``histogram`` family)."""
    result = []
    for bound, count in histogram.cumulative():
        le = "+Inf" if math.isinf(bound) else f"{bound:g}"
        result.append(
            Stat(
                group,
                f"{name}_le_{le}",
                count,
                metric=metric,
                labels=(("le", le),),
                help=help,
                kind="histogram",
                sample="_bucket",
            )
        )
    for sample, value in (("_sum", histogram.sum), ("_count", histogram.count)):
        result.append(
            Stat(
                group,
                f"{name}{sample}",
                value,
                metric=metric,
                help=help,
                kind="histogram",
                sample=sample,
            )
        )
    return result


def worker_stats(rows: Iterable[dict[str, Any]]) -> list[Stat]:
    """The ``workers`` group from the MI ``ps`` rows of a UDP worker pool."""
    result = []
    for row in rows:
        pool, index = str(row.get("Pool", "udp")), str(row.get("Worker", "?"))
        labels = (("pool", pool), ("worker", index))
        prefix = f"{pool}_{index}"
        result.append(
            Stat(
                "workers",
                f"{prefix}_handled",
                int(row.get("Handled") or 0),
                metric="worker_messages_handled",
                labels=labels,
                help="SIP messages handled by the UDP worker",
            )
        )
        result.append(
            Stat(
                "workers",
                f"{prefix}_restarts",
                int(row.get("Restarts") or 0),
                metric="worker_restarts",
                labels=labels,
                help="Times the UDP worker was restarted",
            )
        )
    return result


class HistogramLike(Protocol):
    """What the statistics read from a `sipsock.histogram.Histogram`."""

    sum: float
    count: int

    def cumulative(self) -> list[tuple[float, int]]: ...


class ReportLike(Protocol):
    """What the statistics read from the last `sipsock.reloadplan.ReloadReport`."""

    @property
    def rejected(self) -> Sequence[Any]: ...

    @property
    def failed(self) -> Sequence[Any]: ...


def pool_stats(rows: Iterable[dict[str, Any]]) -> list[Stat]:
    """The size of each UDP worker pool: its workers by state (``ready``, ``starting``,
    ``restarting``, ...), from the MI ``ps`` rows."""
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (str(row.get("Pool", "udp")), str(row.get("State", "ready")))
        counts[key] = counts.get(key, 0) + 1
    return [
        Stat(
            "workers",
            f"{pool}_workers_{state}",
            count,
            incremental=False,
            metric="pool_workers",
            labels=(("pool", pool), ("state", state)),
            help="UDP workers of the pool, by state",
        )
        for (pool, state), count in counts.items()
    ]


def mi_stats(requests: dict[str, int], failures: dict[str, int]) -> list[Stat]:
    """The ``mi`` group: requests and failed requests by command, every front end."""
    result = []
    for command, count in sorted(requests.items()):
        labels = (("command", command),)
        result.append(
            Stat(
                "mi",
                f"{command}_requests",
                count,
                metric="mi_requests",
                labels=labels,
                help="MI requests by command (unknown commands as 'unknown')",
            )
        )
        result.append(
            Stat(
                "mi",
                f"{command}_failures",
                failures.get(command, 0),
                metric="mi_failures",
                labels=labels,
                help="MI requests that answered an error, by command",
            )
        )
    return result


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
            stats += pool_stats(rows) + worker_stats(rows)
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
