"""What the benchmark scripts share: the real daemon, its CPU and memory, UDP probes.

The daemon is the real one (``twistd -n sipsock -c FILE``, started by
`tests.daemon.Daemon`) on an SQLite file in a temporary directory. CPU time
is read from ``/proc/PID/stat`` (utime + stime, children included) and
resident memory from ``/proc/PID/status`` (VmRSS). Not a test: these helpers
print nothing and decide nothing; the scripts print the figures.
"""

from __future__ import annotations

import csv
import heapq
import os
import selectors
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tests.daemon import Daemon
from tests.sip_probe import options_request, status_of
from tests.tables import SocketTable

T = TypeVar("T")

#: Dynamic socket ports are taken below the kernel's ephemeral range, so the
#: ephemeral ports other programs (and SIPp) pick never collide with them.
PORT_RANGE = (20000, 32767)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds the daemon may take to start, and to stop (it closes every socket).
STOP_TIMEOUT = 60.0


class BenchError(Exception):
    """A benchmark could not be run as asked; the message says why."""


# --- the process being measured ----------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except FileNotFoundError:
            continue
        found.extend(int(child) for child in text.split())
    return found


def _own_cpu_seconds(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the daemon and its UDP workers)."""
    pids = [pid]
    for child in _children(pid):
        pids += process_tree(child)
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its live descendants."""
    return sum(_own_cpu_seconds(p) for p in process_tree(pid))


#: The roles of a daemon's processes, in the order `cpu_by_role` gives them.
ROLES = ("control", "udp", "stream")


def process_role(pid: int, root: int) -> str:
    """``control`` (the daemon ``root``), ``stream`` (a stream worker) or ``udp`` (a UDP worker)."""
    if pid == root:
        return "control"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return "udp"
    pool = argv[argv.index(b"--pool") + 1] if b"--pool" in argv[:-1] else b""
    return "stream" if pool == b"stream" else "udp"


def cpu_by_role(pid: int) -> dict[str, float]:
    """`cpu_seconds` of the daemon ``pid`` split by `process_role` (every role present)."""
    seconds = dict.fromkeys(ROLES, 0.0)
    for member in process_tree(pid):
        seconds[process_role(member, pid)] += _own_cpu_seconds(member)
    return seconds


def _field_kib(path: str, name: str) -> int | None:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.startswith(name):
            return int(line.split()[1])
    return None


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` alone in KiB (VmRSS of /proc/PID/status)."""
    value = _field_kib(f"/proc/{pid}/status", "VmRSS:")
    if value is None:
        raise BenchError(f"process {pid} has no VmRSS line in /proc/{pid}/status")
    return value


def pss_kib(pid: int) -> int:
    """Proportional memory of ``pid`` and its descendants in KiB (shared pages split)."""
    total = 0
    for member in process_tree(pid):
        total += _field_kib(f"/proc/{member}/smaps_rollup", "Pss:") or 0
    return total


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = os.times()
    return usage.children_user + usage.children_system


def udp_drops(port: int, host: str = "127.0.0.1") -> int | None:
    """Datagrams the kernel dropped on the IPv4 UDP sockets bound to host:port.

    Read from the last column of /proc/net/udp (a full receive buffer counts
    there), summed over every socket bound to the address (one per worker
    with ``udp_balance = "reuseport"``); None when no such socket exists.
    """
    return udp_drops_on([port], host)


def udp_drops_on(ports: Sequence[int], host: str = "127.0.0.1") -> int | None:
    """`udp_drops` summed over ``ports``; None when no socket is bound to any of them."""
    octets = socket.inet_aton(host)[::-1].hex().upper()
    wanted = {f"{octets}:{port:04X}" for port in ports}
    total: int | None = None
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in wanted:
            total = (total or 0) + int(fields[-1])
    return total


def sipp_totals(stat: Path) -> tuple[int, float]:
    """Retransmissions and elapsed seconds from the last line of SIPp's statistics."""
    with stat.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        raise BenchError(f"SIPp wrote no statistics to {stat}")
    values = dict(zip(rows[0], rows[-1], strict=False))
    # StartTime and CurrentTime read "date<TAB>time<TAB>epoch seconds".
    elapsed = float(values["CurrentTime"].split("\t")[-1]) - float(
        values["StartTime"].split("\t")[-1]
    )
    return int(values.get("Retransmissions(C)", 0)), elapsed


# --- ports and rows ----------------------------------------------------------------


def free_udp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct UDP ports free on ``host`` right now, from `PORT_RANGE`."""
    low, high = PORT_RANGE
    start = low + int.from_bytes(os.urandom(2), "big") % (high - low)
    ports: list[int] = []
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise BenchError(f"only {len(ports)} of {count} UDP ports free in {low}-{high} on {host}")


class SqliteRows:
    """Bulk edits of the sockets table of the daemon's SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            connection.executemany(sql, rows)
            connection.commit()
        finally:
            connection.close()

    def insert_udp(self, ports: Sequence[int], host: str = "127.0.0.1") -> None:
        """One ``udp:HOST:PORT`` row for each port, in order."""
        self._run("INSERT INTO sockets (socket) VALUES (?)", [(f"udp:{host}:{p}",) for p in ports])

    def row_ids(self) -> list[int]:
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            return [int(r[0]) for r in connection.execute("SELECT id FROM sockets ORDER BY id")]
        finally:
            connection.close()

    def set_tag(self, row_id: int, tag: str) -> None:
        self._run("UPDATE sockets SET tag = ? WHERE id = ?", [(tag, row_id)])

    def set_socket(self, row_id: int, text: str) -> None:
        self._run("UPDATE sockets SET socket = ? WHERE id = ?", [(text, row_id)])

    def clear(self) -> None:
        self._run("DELETE FROM sockets", [()])

    def delete_udp(self, ports: Sequence[int], host: str = "127.0.0.1") -> None:
        """Delete the ``udp:HOST:PORT`` rows of these ports."""
        self._run("DELETE FROM sockets WHERE socket = ?", [(f"udp:{host}:{p}",) for p in ports])


# --- the daemon --------------------------------------------------------------------


@dataclass
class BenchDaemon:
    """A running daemon on its own SQLite table, with handles for measuring it."""

    daemon: Daemon
    rows: SqliteRows
    workdir: Path

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)

    def pss(self) -> int:
        return pss_kib(self.pid)

    def processes(self) -> int:
        return len(process_tree(self.pid))

    def wait_idle(
        self, *, window: float = 0.25, busy: float = 0.05, timeout: float = 60.0
    ) -> float:
        """Wait until the daemon's processes use under ``busy`` of a core; seconds waited.

        Work a reload leaves behind (closing ports, worker bookkeeping) is
        seen here; measuring the next step on a busy daemon would blur it.
        """
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            before = self.cpu()
            time.sleep(window)
            if self.cpu() - before < busy * window:
                break
        return time.perf_counter() - start


@contextmanager
def running_daemon(
    *,
    max_sockets: int,
    processes: int | None = None,
    balance: str | None = None,
    keep: bool = False,
    core: str = "",
) -> Iterator[BenchDaemon]:
    """Start ``twistd -n sipsock`` on a fresh SQLite table in a temporary directory.

    ``processes`` and ``balance`` set ``[sockets_mgm] processes`` and
    ``udp_balance`` when given; ``core`` holds extra ``[core]`` lines. The
    directory (config, log, database) is removed at the end unless ``keep``
    is set.
    """
    workdir = Path(tempfile.mkdtemp(prefix="sipsock-bench-"))
    extra = f"[sockets_mgm]\nmax_sockets = {max_sockets}\n"
    if processes is not None:
        extra += f"processes = {processes}\n"
    if balance is not None:
        extra += f'udp_balance = "{balance}"\n'
    if core:
        extra += f"[core]\n{core}"
    daemon = Daemon(workdir, extra=extra)
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    table = SocketTable(daemon.db_url)
    table.init()
    assert table.url.path is not None
    try:
        daemon.start(timeout=STOP_TIMEOUT)
        yield BenchDaemon(daemon, SqliteRows(table.url.path), workdir)
    finally:
        try:
            daemon.stop(timeout=STOP_TIMEOUT)
        except RuntimeError as error:
            # The message carries the whole log: name the file (kept) instead.
            first = str(error).splitlines()[0]
            raise BenchError(f"{first} (log kept: {daemon.logfile})") from None
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --- OPTIONS probes ----------------------------------------------------------------


@dataclass
class ProbeResult(Generic[T]):
    """When a call returned and when each probed port first answered 200."""

    value: T
    call_seconds: float
    answered: dict[int, float] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    sent: int = 0

    @property
    def last_answer(self) -> float | None:
        """Seconds from the call to the last port's first 200 (None if one never did)."""
        if self.missing or not self.answered:
            return None
        return max(self.answered.values())


class _Call(Generic[T]):
    """Run a blocking call in a thread and remember when it returned."""

    def __init__(self, call: Callable[[], T], start: float) -> None:
        self._call = call
        self._start = start
        self.result: list[T] = []
        self.error: BaseException | None = None
        self.seconds: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result.append(self._call())
        except BaseException as error:
            self.error = error
        self.seconds = time.perf_counter() - self._start


@dataclass
class _Probe:
    """One probed port: its own connected socket and when to send next."""

    port: int
    sock: socket.socket
    request: bytes = b""
    due: float = 0.0


class OptionsProber:
    """Sends OPTIONS to many UDP ports and notes when each first answers 200.

    Each port gets its own connected UDP socket, so a probe that reaches no
    socket comes back at once as "connection refused" (the kernel's ICMP port
    unreachable) and is sent again ``interval`` seconds later; a probe that
    reached a bound socket waits there for the daemon, and is repeated only
    after ``resend`` seconds without an answer. The daemon thus sees about one
    OPTIONS per port, whatever the interval.
    """

    def __init__(self, host: str = "127.0.0.1", resend: float = 1.0) -> None:
        self.host = host
        self.resend = resend

    def _open(self, ports: Sequence[int]) -> list[_Probe]:
        probes: list[_Probe] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(_Probe(port, sock))
                sock.setblocking(False)
                sock.bind((self.host, 0))
                sock.connect((self.host, port))
                probes[-1].request = options_request(self.host, port, sock.getsockname()[1])
        except OSError:
            for probe in probes:
                probe.sock.close()
            raise
        return probes

    def during(
        self,
        call: Callable[[], T],
        ports: Sequence[int],
        *,
        timeout: float,
        interval: float = 0.005,
        after_return: bool = False,
    ) -> ProbeResult[T]:
        """Run ``call`` in a thread while probing ``ports``; times are from the call.

        With ``after_return`` the first probes go out when the call has
        returned (no probe traffic competes with the call).
        """
        probes = self._open(ports)
        selector = selectors.DefaultSelector()
        try:
            for probe in probes:
                selector.register(probe.sock, selectors.EVENT_READ, probe)
            return self._run(call, probes, selector, timeout, interval, after_return)
        finally:
            selector.close()
            for probe in probes:
                probe.sock.close()

    def _run(
        self,
        call: Callable[[], T],
        probes: list[_Probe],
        selector: selectors.BaseSelector,
        timeout: float,
        interval: float,
        after_return: bool,
    ) -> ProbeResult[T]:
        # Heap of (due, port); an entry whose due is not the probe's is stale.
        by_port = {probe.port: probe for probe in probes}
        queue: list[tuple[float, int]] = [] if after_return else [(0.0, p.port) for p in probes]
        heapq.heapify(queue)

        def schedule(probe: _Probe, due: float) -> None:
            probe.due = due
            heapq.heappush(queue, (due, probe.port))

        waiting = {probe.port for probe in probes}
        answered: dict[int, float] = {}
        sent = 0
        start = time.perf_counter()
        running = _Call(call, start)
        running.thread.start()
        deadline = start + timeout
        returned = False
        while waiting or running.seconds is None:
            now = time.perf_counter()
            if now >= deadline:
                break
            if not returned and running.seconds is not None:
                returned = True
                if after_return:
                    queue = [(0.0, p.port) for p in probes]
                    heapq.heapify(queue)
            while queue and queue[0][0] <= now:
                due, port = heapq.heappop(queue)
                probe = by_port[port]
                if port not in waiting or due != probe.due:
                    continue
                try:
                    probe.sock.send(probe.request)
                    sent += 1
                    schedule(probe, now + self.resend)
                except (BlockingIOError, ConnectionRefusedError):
                    schedule(probe, now + interval)
            wait = queue[0][0] - time.perf_counter() if queue else 0.002
            wait = min(max(wait, 0.0), 0.002, max(0.0, deadline - time.perf_counter()))
            for key, _ in selector.select(wait):
                probe = key.data
                try:
                    data = probe.sock.recv(65535)
                except BlockingIOError:
                    continue
                except ConnectionRefusedError:
                    schedule(probe, time.perf_counter() + interval)
                    continue
                if probe.port in waiting and status_of(data) == 200:
                    answered[probe.port] = time.perf_counter() - start
                    waiting.discard(probe.port)
                    selector.unregister(probe.sock)
        running.thread.join(max(0.0, deadline - time.perf_counter()) + 5)
        if running.error is not None:
            raise running.error
        if running.seconds is None or not running.result:
            raise BenchError(f"the call did not return within {timeout:g} s")
        return ProbeResult(
            value=running.result[0],
            call_seconds=running.seconds,
            answered=answered,
            missing=sorted(waiting),
            sent=sent,
        )


def machine_note() -> str:
    """Cores, load average and source revision: the context of the figures."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        head = "unknown"
    return f"{os.cpu_count()} cores, load average {load}, source {head or 'unknown'}"


# --- output ------------------------------------------------------------------------


#: A SIPp run held its rate when every call succeeded at this share of the rate asked.
HELD_SHARE = 0.95
#: ... with at most this share of its calls retransmitted (SIPp "0 failed calls"
#: can hide tens of thousands of retransmissions: the rate was not served).
HELD_RETRANSMISSIONS = 0.001


@dataclass(frozen=True)
class Verdict:
    """Whether a run held its rate, and every reason it did not."""

    reasons: tuple[str, ...]

    @property
    def held(self) -> bool:
        return not self.reasons

    def __str__(self) -> str:
        return "held" if self.held else "not held: " + "; ".join(self.reasons)


def held_verdict(
    *,
    rate: float,
    calls: int,
    successful: int,
    failed: int,
    retransmissions: int,
    kernel_drops: int | None,
    achieved: float,
) -> Verdict:
    """The one rule of every ramp: when a run at ``rate`` counts as held.

    Zero failed calls, every call answered, at least `HELD_SHARE` of the rate
    asked achieved, retransmissions at most `HELD_RETRANSMISSIONS` of the
    calls, and no datagram dropped by the kernel on the sockets of the run
    (``kernel_drops``: the daemon's and SIPp's, from /proc/net/udp; None,
    unknown, is not held).
    """
    reasons: list[str] = []
    if failed:
        reasons.append(f"{failed} failed calls")
    if successful + failed < calls:
        reasons.append(f"{calls - successful - failed} calls unanswered")
    if achieved < HELD_SHARE * rate:
        reasons.append(f"{achieved:,.0f}/s achieved < {HELD_SHARE:.0%} of {rate:,.0f}/s")
    if retransmissions > HELD_RETRANSMISSIONS * calls:
        share = retransmissions / calls if calls else 0.0
        reasons.append(
            f"{retransmissions} retransmissions ({share:.2%} of calls > {HELD_RETRANSMISSIONS:.1%})"
        )
    if kernel_drops is None:
        reasons.append("kernel drops unknown (socket not found in /proc/net/udp)")
    elif kernel_drops:
        reasons.append(f"{kernel_drops} datagrams dropped by the kernel")
    return Verdict(tuple(reasons))


class RateFigures:
    """The rate rules of one SIPp run, shared by the rate benchmarks.

    The dataclass that mixes this in provides the fields: ``calls`` and
    ``rate`` asked, ``successful`` and ``failed`` calls, SIPp's
    ``retransmissions``, ``kernel_drops`` on the run's sockets, ``elapsed``
    seconds and ``daemon_cpu`` seconds.
    """

    calls: int
    rate: float
    successful: int
    failed: int
    retransmissions: int
    kernel_drops: int | None
    elapsed: float
    daemon_cpu: float

    @property
    def achieved(self) -> float:
        """Successful calls per second."""
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def verdict(self) -> Verdict:
        """`held_verdict` of this run."""
        return held_verdict(
            rate=self.rate,
            calls=self.calls,
            successful=self.successful,
            failed=self.failed,
            retransmissions=self.retransmissions,
            kernel_drops=self.kernel_drops,
            achieved=self.achieved,
        )

    @property
    def held(self) -> bool:
        """The run held its rate (see `held_verdict`)."""
        return self.verdict.held

    @property
    def cpu_us(self) -> float | None:
        """Daemon CPU microseconds per successful call."""
        return self.daemon_cpu / self.successful * 1e6 if self.successful else None


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = ""
) -> None:
    """Print an aligned table; ``align`` has an "l" or "r" per column (default "lrr...")."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
