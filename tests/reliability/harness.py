"""What the fault tests measure and do: /proc figures, hostile senders, bounded polls.

Figures come from /proc (Linux): resident memory (``VmRSS``) and open
descriptors of the control process and of each UDP worker. Hostile traffic
comes from `Flood` (random bytes and real SIP messages cut at random points,
as fast as one Python thread sends them) and from `run_svmap` (SIPVicious's
scanner). Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemon import Daemon, child_pids
from tests.net import free_port
from tests.sipp import SippResult, SippRun
from tests.tables import SocketTable

SVMAP = str(Path(sys.executable).with_name("sipvicious_svmap"))


# --- /proc --------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (``VmRSS``), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def fd_count(pid: int, ignore: frozenset[int] = frozenset()) -> int:
    """Open descriptors of ``pid`` (0 when it is gone), less the sockets in ``ignore``."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    if not ignore:
        return len(names)
    count = 0
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not (target.startswith("socket:[") and int(target[8:-1]) in ignore):
            count += 1
    return count


def tcp_connection_inodes(local_port: int) -> frozenset[int]:
    """Inodes of the TCP connections (not listeners) whose local port is ``local_port``."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = fields[3] == "0A"
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port and not listening:
                inodes.add(int(fields[9]))
    return frozenset(inodes)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def worker_rows(daemon: Daemon, pool: str = "dynamic") -> list[dict[str, Any]]:
    """The MI ``ps`` rows of one UDP worker pool."""
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == pool]


def worker_pids(daemon: Daemon, pool: str = "dynamic") -> list[int]:
    """The pids of the running workers of a pool."""
    return [row["PID"] for row in worker_rows(daemon, pool) if row["PID"] is not None]


def worker_pid(daemon: Daemon, index: int) -> int | None:
    """The pid of the current process of dynamic worker ``index`` (from /proc), if any."""
    wanted = ["--pool", "dynamic", "--index", str(index)]
    for pid in child_pids(daemon.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().decode().split("\0")
        except OSError:
            continue
        if any(argv[i : i + 4] == wanted for i in range(len(argv))):
            return pid
    return None


@dataclass(frozen=True)
class ProcessFigures:
    """Memory (KiB) and descriptor counts of a daemon's processes at one moment."""

    control: int
    rss: dict[int, int]
    fds: dict[int, int]

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())

    @property
    def workers(self) -> list[int]:
        return [pid for pid in self.rss if pid != self.control]

    def describe(self) -> str:
        control = f"control {self.rss[self.control] / 1024:.1f} MiB/{self.fds[self.control]} fds"
        workers = ", ".join(
            f"{pid}: {self.rss[pid] / 1024:.1f} MiB/{self.fds[pid]} fds" for pid in self.workers
        )
        return f"total {self.total_rss / 1024:.1f} MiB; {control}; workers {workers}"


def snapshot(daemon: Daemon, pools: tuple[str, ...] = ("dynamic",)) -> ProcessFigures:
    """Memory and descriptors of the control process and the workers of ``pools``.

    Descriptors of MI connections (the one asking included) are not counted.
    """
    pids = [daemon.pid]
    for pool in pools:
        pids += worker_pids(daemon, pool)
    # The MI connection that asked for ``ps`` may not be closed yet: not a leak.
    mi = tcp_connection_inodes(daemon.http_port)
    return ProcessFigures(
        daemon.pid, {pid: rss_kib(pid) for pid in pids}, {pid: fd_count(pid, mi) for pid in pids}
    )


# --- ports ------------------------------------------------------------------------------


def quiet_ports(count: int, seed: int, low: int = 10000, high: int = 20000) -> list[int]:
    """``count`` loopback ports below the ephemeral range, free for UDP and TCP now.

    Ports from `tests.net.free_port` come from the ephemeral range, which every
    outgoing connection draws its local port from: a test that reloads
    thousands of times through the MI opens thousands of connections, and
    their TIME_WAIT ends (60 s) block a listener on a churned port (seen
    here: "port already in use" on a port reused by a closed MI connection).
    The benchmarks take theirs from 20000-32767 (bench/common.py): not these.
    """
    rng = random.Random(seed)
    ports: list[int] = []
    for port in rng.sample(range(low, high), min(high - low, count * 20)):
        if len(ports) == count:
            break
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind(("127.0.0.1", port))
        except OSError:
            continue
        ports.append(port)
    if len(ports) < count:
        raise RuntimeError(f"only {len(ports)} of {count} free ports in {low}-{high - 1}")
    return ports


# --- polls --------------------------------------------------------------------------


@contextmanager
def daemon_park(base: Path) -> Iterator[Callable[..., Daemon]]:
    """A ``start(db_url, extra="", name="d")`` for daemons stopped at the end.

    A daemon that does not stop in time is killed and fails the test.
    """
    started: list[Daemon] = []

    def start(db_url: str, extra: str = "", name: str = "d") -> Daemon:
        workdir = base / f"{name}{len(started)}"
        workdir.mkdir()
        daemon = Daemon(workdir, db_url=db_url, extra=extra)
        started.append(daemon)
        daemon.start()
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


# --- hostile traffic ------------------------------------------------------------------

_SAMPLES = (
    "OPTIONS sip:{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{n}\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:scan@127.0.0.1>;tag={n}\r\nTo: <sip:{host}:{port}>\r\n"
    "Call-ID: {n}@flood\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:100@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{n};rport\r\n"
    'Max-Forwards: 70\r\nFrom: "x" <sip:100@127.0.0.1>;tag={n}\r\n'
    "To: <sip:100@{host}>\r\nCall-ID: {n}@flood\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:100@127.0.0.1:{src}>\r\nContent-Type: application/sdp\r\n"
    "Content-Length: 129\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
    "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{n}\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:100@{host}>;tag={n}\r\nTo: <sip:100@{host}>\r\n"
    "Call-ID: {n}@flood\r\nCSeq: 7 REGISTER\r\nContact: <sip:100@127.0.0.1:{src}>\r\n"
    "Expires: 3600\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{n}\r\n"
    "From: <sip:a@127.0.0.1>;tag={n}\r\nTo: <sip:b@{host}>;tag=x\r\n"
    "Call-ID: {n}@flood\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
)


def hostile_payloads(host: str, port: int, count: int, seed: int) -> list[bytes]:
    """``count`` datagrams: half random bytes, half real SIP messages cut at a random point."""
    rng = random.Random(seed)
    payloads: list[bytes] = []
    for n in range(count):
        if n % 2:
            payloads.append(rng.randbytes(rng.randint(1, 1400)))
            continue
        sample = rng.choice(_SAMPLES).format(host=host, port=port, src=40000 + n, n=n).encode()
        payloads.append(sample[: rng.randint(1, len(sample) - 1)])
    return payloads


@dataclass(frozen=True)
class FloodFigures:
    """What a `Flood` sent."""

    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class Flood:
    """Hostile datagrams to ``(host, port)`` from one thread, as fast as it goes.

    Bounded by ``seconds`` and by ``max_packets``; `wait` gives the figures.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        seconds: float,
        max_packets: int = 10_000_000,
        seed: int = 9,
    ) -> None:
        self.target = (host, port)
        self.seconds = seconds
        self.max_packets = max_packets
        self.payloads = hostile_payloads(host, port, 4096, seed)
        self.figures: FloodFigures | None = None
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def start(self) -> Flood:
        self._thread.start()
        return self

    def wait(self) -> FloodFigures:
        self._thread.join(self.seconds + 30)
        assert self.figures is not None, "the flood thread did not finish"
        return self.figures

    def _run(self) -> None:
        sent = 0
        payloads = self.payloads
        started = time.monotonic()
        deadline = started + self.seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.connect(self.target)
            send = sock.send
            while sent < self.max_packets:
                for payload in payloads:
                    try:  # noqa: SIM105 (contextlib.suppress halves the rate)
                        send(payload)
                    except OSError:
                        pass  # ICMP errors and full buffers: a flood does not care
                sent += len(payloads)
                if time.monotonic() >= deadline:
                    break
        self.figures = FloodFigures(sent, time.monotonic() - started)


def run_svmap(port: int, workdir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Scan ``127.0.0.1`` port ``port`` with ``sipvicious_svmap`` (never ``-R``, ``-A``)."""
    if not os.access(SVMAP, os.X_OK) and shutil.which("sipvicious_svmap") is None:
        raise AssertionError(
            "sipvicious_svmap is not installed: pip install -e '.[test]' installs the "
            "sipvicious package (setup.cfg test extras)"
        )
    program = SVMAP if os.access(SVMAP, os.X_OK) else str(shutil.which("sipvicious_svmap"))
    home = workdir / "svmap-home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [program, "127.0.0.1", "-p", str(port), "-P", str(free_port())],
        cwd=home,
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def finish_sipp(run: SippRun) -> SippResult:
    """Ask a running SIPp to start no new call (SIGUSR1), then wait for its result.

    Calls in progress end normally, so a graceful finish counts no failure.
    """
    if run.running():
        run.proc.send_signal(signal.SIGUSR1)
    return run.wait()


# --- table churn ---------------------------------------------------------------------


@dataclass
class Churn:
    """Up to ``size`` churning rows of a sockets table and the seeded edits made to them.

    Each row is ``proto:127.0.0.1:port`` with a port of ``ports`` that no
    other churning row uses; `edit` makes one random edit, `restore` puts
    the rows back as they were.
    """

    table: SocketTable
    ports: list[int]
    rng: random.Random
    size: int = 50
    rows: dict[int, tuple[str, int, str | None]] = field(default_factory=dict)
    edits: dict[str, int] = field(default_factory=dict)

    def free_ports(self) -> list[int]:
        used = {port for _, port, _ in self.rows.values()}
        return [port for port in self.ports if port not in used]

    def add(self) -> None:
        proto = self.rng.choice(("udp", "udp", "tcp"))
        port = self.rng.choice(self.free_ports())
        row = self.table.insert(f"{proto}:127.0.0.1:{port}")
        self.rows[row] = (proto, port, None)

    def edit(self) -> None:
        """One random edit: add, remove, or change the tag, port or protocol of a row."""
        choices = ["add"] if len(self.rows) < self.size else []
        if self.rows:
            choices += ["remove", "tag", "port", "proto"]
        kind = self.rng.choice(choices)
        self.edits[kind] = self.edits.get(kind, 0) + 1
        if kind == "add":
            self.add()
            return
        row = self.rng.choice(sorted(self.rows))
        proto, port, tag = self.rows[row]
        if kind == "remove":
            self.table.delete(row)
            del self.rows[row]
        elif kind == "tag":
            tag = f"t{self.rng.randrange(1000)}"
            self.table.update(row, tag=tag)
        elif kind == "port":
            port = self.rng.choice(self.free_ports())
            self.table.update(row, socket=f"{proto}:127.0.0.1:{port}")
        else:
            proto = "tcp" if proto == "udp" else "udp"
            self.table.update(row, socket=f"{proto}:127.0.0.1:{port}")
        if kind != "remove":
            self.rows[row] = (proto, port, tag)

    def restore(self, start: dict[int, tuple[str, int, str | None]]) -> None:
        """Put the churning rows back as they were at ``start``."""
        for row in list(self.rows):
            self.table.delete(row)
        self.rows = {}
        for proto, port, tag in start.values():
            row = self.table.insert(f"{proto}:127.0.0.1:{port}", tag=tag)
            self.rows[row] = (proto, port, tag)


# --- slots ------------------------------------------------------------------------------


class SlotOrderError(AssertionError):
    """A slot was handed out while an older freed slot was still waiting."""


class FifoSlotModel:
    """The FIFO rule of `sipsock.slots`, checked from the outside.

    Fed with the ``sockets_list`` details (slot -> socket) before and after
    each reload, it keeps the free slots as groups in release order (the
    order inside one reload's releases is not visible from outside, so a
    group is a set) and checks that every slot handed out is the one that
    has been free the longest. ``max_sockets`` slots start free in order.
    """

    def __init__(self, max_sockets: int, used: dict[int, str] | None = None) -> None:
        taken = set(used or {})
        self.queue: list[set[int]] = [{slot} for slot in range(max_sockets) if slot not in taken]
        self.current: dict[int, str] = dict(used or {})
        self.freed = 0
        self.allocated = 0

    def observe(self, after: dict[int, str]) -> None:
        """Check the slots of the sockets listed after one reload; raises `SlotOrderError`."""
        before = self.current
        freed = {slot for slot, name in before.items() if after.get(slot) != name}
        allocated = {slot for slot, name in after.items() if before.get(slot) != name}
        if freed:
            self.queue.append(freed)
        self.freed += len(freed)
        self.allocated += len(allocated)
        remaining = set(allocated)
        while remaining:
            if not self.queue:
                raise SlotOrderError(f"slots {sorted(remaining)} handed out but none was free")
            head = self.queue[0]
            if head <= remaining:
                remaining -= head
                self.queue.pop(0)
            elif remaining <= head:
                head -= remaining
                remaining = set()
            else:
                waiting = sorted(head - remaining)
                raise SlotOrderError(
                    f"slots {sorted(remaining - head)} handed out while slots {waiting}, "
                    "freed earlier, were still waiting"
                )
        if self.queue and not self.queue[0]:
            self.queue.pop(0)
        self.current = dict(after)
