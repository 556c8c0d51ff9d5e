"""Statistic values (`Stat`) and the pure rules over them.

Which statistics a name selects (OpenSIPS's ``group:`` and ``group:name``
rules), how the daemon's counters become `Stat` values (per socket, totals,
histograms, workers, pools, MI commands), and the Prometheus text exposition
of a list of them. No I/O: `sipsock.stats.Statistics` collects the values
from the running daemon.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Protocol

from sipsock.seams import SocketCounters
from sipsock.sockdef import SocketDef

#: Prefix of every Prometheus metric.
PREFIX: Final = "sipsock"
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


def scaling_stats(rows: Iterable[dict[str, Any]]) -> list[Stat]:
    """Each pool's size, and for an auto-scaled pool its load, changes of size and last
    decision, from the MI ``ps`` rows (an auto-scaled pool's rows carry ``Scaling``)."""
    sizes: dict[str, int] = {}
    scaling: dict[str, dict[str, Any]] = {}
    for row in rows:
        pool = str(row.get("Pool", "udp"))
        sizes[pool] = sizes.get(pool, 0) + 1
        if isinstance(row.get("Scaling"), dict):
            scaling.setdefault(pool, row["Scaling"])
    result = []
    for pool, size in sizes.items():
        labels = (("pool", pool),)
        result.append(
            Stat(
                "workers",
                f"{pool}_size",
                size,
                incremental=False,
                metric="pool_size",
                labels=labels,
                help="Workers of the pool (seats, whatever their state)",
            )
        )
        summary = scaling.get(pool)
        if summary is None:
            continue
        if summary.get("Load %") is not None:
            result.append(
                Stat(
                    "workers",
                    f"{pool}_load",
                    float(summary["Load %"]),
                    incremental=False,
                    metric="pool_load_percent",
                    labels=labels,
                    help="Mean CPU share of the pool's ready workers over the last cycle, percent",
                )
            )
        for action, count in sorted(summary.get("Changes", {}).items()):
            result.append(
                Stat(
                    "workers",
                    f"{pool}_scaled_{action}",
                    int(count),
                    metric="pool_scalings",
                    labels=(*labels, ("action", action)),
                    help="Changes of the pool's size by its auto-scaling profile",
                )
            )
        if summary.get("Code") is not None:
            action = str(summary.get("Decision", "hold")).split(" ", 1)[0]
            result.append(
                Stat(
                    "workers",
                    f"{pool}_decision",
                    1,
                    incremental=False,
                    metric="pool_scaling_decision",
                    labels=(*labels, ("action", action), ("code", str(summary["Code"]))),
                    help="The last auto-scaling decision (its reason in the MI ps)",
                )
            )
    return result


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
