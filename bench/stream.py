"""Print stream-transport figures of the real daemon: OPTIONS/s and memory per idle connection.

Not a test. Run from the repository root::

    .venv/bin/python bench/stream.py [--seconds 5] [--idle 5000] [--conns 1,10,100]

The daemon (``twistd -n sipsock``, answered by the built-in Responder) gets
one static socket per transport: TCP, TLS, WS and WSS, with a trustme
certificate (ECDSA P-256). The client is one asyncio process (the standard
library's TLS, WebSocket frames built by hand) running closed loops: each
connection sends an OPTIONS, waits for its 200, sends the next
(``--scenario invite``: an INVITE, and on its 501 the ACK and the next
call's INVITE, each call with its own Call-ID and branch). Figures:

* OPTIONS (or calls) answered per second for 1, 10 and 100 concurrent
  connections per transport (``--transports``, default all four), with
  the daemon's CPU use over the same interval (100 % = one core: the
  daemon is the bottleneck; less: the client is), its CPU microseconds per
  OPTIONS (or call) and per SIP message it read or wrote (an OPTIONS and
  its 200 are two; INVITE, 501 and ACK three). The client is this process,
  not one of the daemon's: its CPU is not counted. ``--py-spy DIR``
  records every daemon process with ``py-spy record --native`` during each
  case (raw stacks, one file per process);
* idle connections: N TLS connections opened and left idle, how many still
  answer an OPTIONS afterwards, and the daemon's resident memory per
  connection (VmRSS of the control process and every worker, after minus
  before, divided by N), and how long a new client then waits for its first
  200; the same for TCP and WSS.
* ``--saturate``: only TCP, 100 connections in closed loops: OPTIONS/s, CPU
  microseconds per OPTIONS over every process of the daemon (the control
  process and its workers) and the control process's share of that CPU;
  then, the load still running, the MI's ``uptime`` asked over HTTP every
  20 ms: its round trip (median, p99, max). Run it with ``--tcp-workers 1`` and
  ``2`` to compare (on a daemon without stream workers, leave it out).

CPU figures cover the control process and its worker processes (their
children), read from /proc.

The soft RLIMIT_NOFILE is raised to the hard limit here and by the daemon.

``--sipp t1`` measures instead one TCP connection at a fixed rate (see
`sipp_t1`): SIPp ``-t t1`` sending OPTIONS (``--scenario options``) or
INVITE then ACK on the 501 (``--scenario invite``), the daemon's CPU
microseconds per message and per call, and whether the rate was held
(`bench.common.held_verdict`)::

    .venv/bin/python bench/stream.py --sipp t1 --rate 10000 --seconds 10 --reps 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import held_verdict, sipp_totals

from tests.daemon import Daemon
from tests.net import free_port
from tests.sip_probe import options_request
from tests.sipp import start_sipp
from tests.tlsfiles import TestPKI, domain_toml

TRANSPORTS = ("tcp", "tls", "ws", "wss")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OPEN_PARALLEL = 200


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says why."""


# -- the measured process ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """The worker processes of the daemon (its direct children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def family_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the control process, and of its workers together."""
    workers = 0.0
    for child in children(pid):
        try:
            workers += cpu_seconds(child)
        except OSError:
            continue
    return cpu_seconds(pid), workers


def daemon_cpu(pid: int) -> float:
    """CPU seconds of the whole daemon: the control process and its workers (the
    stream workers serve every connection since ``[core] tcp_workers``)."""
    control, workers = family_cpu(pid)
    return control + workers


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def family(pid: int) -> list[int]:
    """The daemon's control process and its workers."""
    return [pid, *children(pid)]


def family_rss_kib(pid: int) -> int:
    """Resident memory of the control process and every worker, summed."""
    return sum(rss_kib(member) for member in family(pid))


def family_fds(pid: int) -> int:
    """Open descriptors of the control process and every worker, summed."""
    return sum(open_fds(member) for member in family(pid))


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- clients ---------------------------------------------------------------------------


class Connection:
    """One client connection speaking SIP over a stream or over WebSocket."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = ws
        self.transport_name = "WS" if ws else "TCP"
        self.local_port = writer.get_extra_info("sockname")[1]
        self.request = self.frame(
            options_request("127.0.0.1", 5060, self.local_port, self.transport_name)
        )

    def frame(self, message: bytes) -> bytes:
        """``message`` as it goes on the wire: as is, or in one masked WebSocket text frame."""
        if not self.ws:
            return message
        # A client frame masked with the all-zero key: the payload is sent as is.
        header = bytes([0x81, 0x80 | 126]) + len(message).to_bytes(2, "big")
        return header + b"\x00\x00\x00\x00" + message

    async def options(self) -> bool:
        """Send one OPTIONS and read its answer; True for a 200."""
        self.writer.write(self.request)
        if self.ws:
            head = await self.reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            answer = await self.reader.readexactly(length)
        else:
            answer = await self.reader.readuntil(b"\r\n\r\n")
            # The Responder's answers have no body (Content-Length: 0).
        return answer.startswith(b"SIP/2.0 200 ")

    def close(self) -> None:
        self.writer.close()


class InviteCalls:
    """The requests of ``--scenario invite`` on one connection: INVITE, then ACK on its 501.

    As SIPp's scenario: every call has its own Call-ID, branch and From tag;
    the ACK copies the 501's To (with the tag the daemon chose).
    """

    #: SIP messages the daemon handles per call: INVITE, 501, ACK.
    MESSAGES = 3

    def __init__(self, connection: Connection) -> None:
        self.frame = connection.frame
        self.via_host = f"SIP/2.0/{connection.transport_name} 127.0.0.1:{connection.local_port}"
        self.local_port = connection.local_port
        self.call = 0

    def _head(self, method: str, branch: str) -> str:
        return (
            f"{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: {self.via_host};branch=z9hG4bK{branch};rport\r\n"
            f"From: bench <sip:bench@127.0.0.1:{self.local_port}>;tag={self.call}\r\n"
        )

    def invite(self) -> bytes:
        """The next call's INVITE."""
        self.call += 1
        call = self.call
        return self.frame(
            (
                self._head("INVITE", f"{self.local_port}x{call}")
                + "To: <sip:service@127.0.0.1:5060>\r\n"
                f"Call-ID: {call}-{self.local_port}@bench\r\n"
                "CSeq: 1 INVITE\r\n"
                f"Contact: <sip:bench@127.0.0.1:{self.local_port}>\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )

    def ack(self, answer: bytes) -> bytes:
        """The ACK of this call's ``answer`` (its To line copied)."""
        start = answer.find(b"\r\nTo:") + 2
        to = answer[start : answer.find(b"\r\n", start)].decode()
        return self.frame(
            (
                self._head("ACK", f"{self.local_port}x{self.call}")
                + f"{to}\r\nCall-ID: {self.call}-{self.local_port}@bench\r\n"
                "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )


async def connect(port: int, transport: str, context: ssl.SSLContext | None) -> Connection:
    tls = context if transport in ("tls", "wss") else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=tls,
            server_hostname="localhost" if tls else None,
            limit=1 << 20,
        ),
        timeout=30,
    )
    ws = transport in ("ws", "wss")
    if ws:
        writer.write(
            (
                "GET / HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: c2lwc29jay1iZW5jaC0xNg==\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: sip\r\n"
                "Origin: https://bench.example\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise BenchError(f"WebSocket handshake refused: {head[:80]!r}")
    return Connection(reader, writer, ws)


async def open_many(
    count: int, port: int, transport: str, context: ssl.SSLContext | None
) -> list[Connection]:
    """``count`` connections, at most OPEN_PARALLEL handshakes at a time."""
    gate = asyncio.Semaphore(OPEN_PARALLEL)

    async def one() -> Connection:
        async with gate:
            return await connect(port, transport, context)

    return list(await asyncio.gather(*(one() for _ in range(count))))


class LoopClient(asyncio.Protocol):
    """Closed loop on an open connection: the next request leaves when an answer arrives.

    A plain protocol (no coroutine per message) so the client costs less CPU
    than the daemon it measures. ``--scenario options``: the same OPTIONS
    again; ``invite``: the ACK of the 501, then the next call's INVITE
    (`InviteCalls`).
    """

    def __init__(self, connection: Connection, scenario: str = "options") -> None:
        self.transport = connection.writer.transport
        self.request = connection.request
        self.ws = connection.ws
        self.calls = InviteCalls(connection) if scenario == "invite" else None
        self.buffer = b""
        self.running = False
        self.answered = 0
        self.transport.set_protocol(self)

    def start(self) -> None:
        self.running = True
        self.transport.write(self.request if self.calls is None else self.calls.invite())

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers: list[bytes] = []
        if self.ws:
            while len(buffer) >= 2:
                length, offset = buffer[1] & 0x7F, 2
                if length == 126:
                    if len(buffer) < 4:
                        break
                    length, offset = int.from_bytes(buffer[2:4], "big"), 4
                if len(buffer) < offset + length:
                    break
                answers.append(buffer[offset : offset + length])
                buffer = buffer[offset + length :]
        else:
            # The Responder's answers have no body (Content-Length: 0).
            *answers, buffer = buffer.split(b"\r\n\r\n")
        self.buffer = buffer
        self.answered += len(answers)
        if not self.running:
            return
        calls = self.calls
        for answer in answers:
            if calls is None:
                self.transport.write(self.request)
            else:
                self.transport.write(calls.ack(answer))
                self.transport.write(calls.invite())

    def connection_lost(self, exc: Exception | None) -> None:
        self.running = False


async def throughput_case(
    pid: int,
    connections: list[Connection],
    seconds: float,
    warmup: float,
    scenario: str = "options",
    profile: Path | None = None,
) -> str:
    """One closed-loop case; with ``profile``, py-spy records every daemon process meanwhile."""
    clients = [LoopClient(connection, scenario) for connection in connections]
    for client in clients:
        client.start()
    await asyncio.sleep(warmup)
    answered = sum(c.answered for c in clients)
    spies = [] if profile is None else start_py_spy(pid, seconds, profile)
    cpu_before, started = daemon_cpu(pid), time.monotonic()
    await asyncio.sleep(seconds)
    answered = sum(c.answered for c in clients) - answered
    elapsed = time.monotonic() - started
    cpu_used = daemon_cpu(pid) - cpu_before
    for client in clients:
        client.running = False
    for spy in spies:
        await asyncio.to_thread(spy.wait, seconds + 30)
    await asyncio.sleep(0.3)
    # SIP messages the daemon handled per answer: OPTIONS and its 200, or
    # INVITE, 501 and ACK.
    per_answer = cpu_used / answered * 1e6 if answered else 0.0
    per_message = per_answer / (InviteCalls.MESSAGES if scenario == "invite" else 2)
    return (
        f"{answered / elapsed:6.0f} {cpu_used / elapsed * 100:3.0f}% "
        f"{per_answer:4.0f} {per_message:4.0f}"
    )


def start_py_spy(pid: int, seconds: float, prefix: Path) -> list[subprocess.Popen[bytes]]:
    """``py-spy record --native`` on the daemon's processes for ``seconds``: one raw
    (collapsed stacks) file per process, ``PREFIX-PID.txt``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy, "record", "--native", "--format", "raw",
                "-d", str(int(seconds)), "-p", str(member), "-o", f"{prefix}-{member}.txt",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for member in family(pid)
    ]  # fmt: skip


async def throughput(
    daemon: Daemon,
    ports: dict[str, int],
    context: ssl.SSLContext,
    args: argparse.Namespace,
) -> None:
    conns = [int(n) for n in args.conns.split(",")]
    seconds = args.seconds
    what = "OPTIONS" if args.scenario == "options" else "INVITE/501/ACK calls"
    unit = "OPTIONS" if args.scenario == "options" else "call"
    print(
        f"\n{what} answered per second, closed loop, {seconds:g} s per case; then the "
        f"daemon's CPU use\n(100% = one core), its CPU microseconds per {unit} "
        "and per SIP message it read or wrote"
    )
    print("transport " + "".join(f"{f'{n} conn: /s cpu us/req us/msg':>30}" for n in conns))
    for transport in args.transports.split(","):
        cells: list[str] = []
        for count in conns:
            connections = await open_many(count, ports[transport], transport, context)
            profile = (
                None
                if args.py_spy is None
                else Path(args.py_spy) / f"{transport}-{args.scenario}-{count}"
            )
            cells.append(
                await throughput_case(
                    daemon.pid,
                    connections,
                    seconds,
                    min(1.0, seconds / 5),
                    args.scenario,
                    profile,
                )
            )
            for connection in connections:
                connection.close()
            await asyncio.sleep(0.5)
        print(f"{transport:<10}" + "".join(f"{cell:>30}" for cell in cells), flush=True)


async def idle(
    daemon: Daemon,
    transport: str,
    port: int,
    context: ssl.SSLContext,
    count: int,
    hold: float,
) -> None:
    pid = daemon.pid
    await asyncio.sleep(1.0)
    before = family_rss_kib(pid)
    fds_before = family_fds(pid)
    started = time.monotonic()
    connections = await open_many(count, port, transport, context)
    opened_in = time.monotonic() - started
    await asyncio.sleep(hold)
    after = family_rss_kib(pid)
    fds = family_fds(pid) - fds_before
    # A new client among the idle ones: connect, handshake and its first 200.
    started = time.monotonic()
    [newcomer] = await open_many(1, port, transport, context)
    newcomer_ok = await asyncio.wait_for(newcomer.options(), timeout=30)
    newcomer_ms = (time.monotonic() - started) * 1000
    newcomer.close()
    answers = await asyncio.gather(
        *(asyncio.wait_for(c.options(), timeout=30) for c in connections),
        return_exceptions=True,
    )
    held = sum(1 for answer in answers if answer is True)
    per = (after - before) / count
    print(
        f"idle {transport.upper():<4} {count} opened in {opened_in:.1f} s, "
        f"{fds} descriptors in the daemon, {held} still answered after {hold:g} s idle; "
        f"RSS of all processes {before / 1024:.1f} -> {after / 1024:.1f} MiB = "
        f"{per:.1f} kB per connection; a new client's first "
        f"{'200' if newcomer_ok is True else 'answer (not 200)'} in {newcomer_ms:.0f} ms"
    )
    for connection in connections:
        connection.close()
    await asyncio.sleep(1.0)


def mi_uptime_ms(port: int) -> float:
    """One ``uptime`` over the HTTP MI (a fresh connection): milliseconds round trip."""
    import http.client

    body = b'{"jsonrpc": "2.0", "method": "uptime", "id": 1}'
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/mi", body, {"Content-Type": "application/json"})
        answer = connection.getresponse().read()
    finally:
        connection.close()
    if b'"result"' not in answer:
        raise BenchError(f"MI uptime failed: {answer[:100]!r}")
    return (time.perf_counter() - started) * 1000


async def saturate(daemon: Daemon, port: int, seconds: float, count: int = 100) -> None:
    """TCP closed loops on ``count`` connections: CPU for ``seconds``, then MI round trips.

    The CPU figures are taken without MI traffic (the MI's own work is the
    control process's); the MI is then asked ``uptime`` every 20 ms for
    another ``seconds``, the load still running.
    """
    connections = await open_many(count, port, "tcp", None)
    clients = [LoopClient(connection) for connection in connections]
    for client in clients:
        client.start()
    await asyncio.sleep(1.0)
    answered = sum(c.answered for c in clients)
    control_before, workers_before = family_cpu(daemon.pid)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    answered = sum(c.answered for c in clients) - answered
    control_after, workers_after = family_cpu(daemon.pid)
    trips: list[float] = []
    mi_started = time.monotonic()
    while time.monotonic() - mi_started < seconds:
        trips.append(await asyncio.to_thread(mi_uptime_ms, daemon.http_port))
        await asyncio.sleep(0.02)
    for client in clients:
        client.running = False
    await asyncio.sleep(0.3)
    for connection in connections:
        connection.close()
    control = control_after - control_before
    total = control + workers_after - workers_before
    trips.sort()
    p99 = trips[min(len(trips) - 1, int(len(trips) * 0.99))]
    print(
        f"saturate TCP {count} conn: {answered / elapsed:6.0f} OPTIONS/s, "
        f"{total / answered * 1e6 if answered else 0:5.0f} CPU us per OPTIONS (all processes), "
        f"daemon CPU {total / elapsed * 100:3.0f}%, control process "
        f"{control / total * 100 if total else 0:4.1f}% of it; MI uptime over HTTP "
        f"({len(trips)} asked): median {trips[len(trips) // 2]:.1f} ms, p99 {p99:.1f} ms, "
        f"max {trips[-1]:.1f} ms"
    )


async def main_async(
    args: argparse.Namespace, daemon: Daemon, ports: dict[str, int], pki: TestPKI
) -> None:
    if args.saturate:
        await saturate(daemon, ports["tcp"], args.seconds)
        return
    context = pki.client_context()
    await throughput(daemon, ports, context, args)
    print()
    for transport in args.idle_transports.split(",") if args.idle else ():
        await idle(daemon, transport, ports[transport], context, args.idle, args.hold)


#: SIPp scenario and SIP messages the daemon handles per call, by --scenario.
SIPP_SCENARIOS = {"options": ("options_uac.xml", 2), "invite": ("invite_501_uac.xml", 3)}


def sipp_t1(daemon: Daemon, port: int, args: argparse.Namespace, workdir: Path) -> None:
    """SIPp ``-t t1`` (every call on one TCP connection) at ``--rate`` calls/s, ``--reps`` times.

    Prints per run: calls ok/failed, SIPp's retransmissions, the rate
    achieved, the daemon's CPU microseconds per call and per SIP message it
    read or wrote (OPTIONS: request and 200; INVITE: INVITE, 501 and ACK),
    and `held_verdict` (a TCP run has no kernel datagram drops: 0).
    """
    scenario, per_call = SIPP_SCENARIOS[args.scenario]
    calls = int(args.rate * args.seconds)
    print(
        f"\nSIPp -t {args.sipp} {scenario}: {calls} calls at {args.rate:g}/s on one connection; "
        f"daemon CPU per call and per message ({per_call} messages a call)"
    )
    for rep in range(args.reps):
        cpu_before = daemon_cpu(daemon.pid)
        run = start_sipp(
            f"127.0.0.1:{port}",
            scenario=scenario,
            transport=args.sipp,
            calls=calls,
            rate=args.rate,
            workdir=workdir,
            timeout=args.seconds * 3 + 20,
        )
        result = run.wait()
        cpu = daemon_cpu(daemon.pid) - cpu_before
        retransmissions, elapsed = sipp_totals(run.stat)
        achieved = result.successful / elapsed if elapsed > 0 else 0.0
        verdict = held_verdict(
            rate=args.rate,
            calls=calls,
            successful=result.successful,
            failed=result.failed,
            retransmissions=retransmissions,
            kernel_drops=0,
            achieved=achieved,
        )
        per_call_us = cpu / result.successful * 1e6 if result.successful else 0.0
        print(
            f"  run {rep + 1}: {result.successful}/{calls} ok, {result.failed} failed, "
            f"{retransmissions} retransmissions, {achieved:,.0f}/s, daemon "
            f"{cpu / elapsed * 100:.0f}% CPU, {per_call_us:.1f} us/call = "
            f"{per_call_us / per_call:.1f} us/message: {verdict}",
            flush=True,
        )
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput case")
    parser.add_argument("--conns", default="1,10,100", help="concurrent connections per case")
    parser.add_argument("--idle", type=int, default=5000, help="idle connections to hold")
    parser.add_argument(
        "--idle-transports",
        default="tcp,tls,wss",
        help="transports of the idle part, in order, one daemon (tcp,tls,wss); a transport "
        "run after another reuses the memory the earlier one freed: run it alone to size it",
    )
    parser.add_argument("--hold", type=float, default=10.0, help="seconds to leave them idle")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--sipp", choices=("t1",), help="SIPp on one TCP connection instead")
    parser.add_argument(
        "--scenario",
        choices=tuple(SIPP_SCENARIOS),
        default="options",
        help="OPTIONS, or INVITE then ACK on the 501 (SIPp and closed loops)",
    )
    parser.add_argument(
        "--transports", default=",".join(TRANSPORTS), help="closed-loop transports, in order"
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="record each closed-loop case with py-spy --native (raw stacks in DIR)",
    )
    parser.add_argument("--rate", type=float, default=10000.0, help="calls per second (--sipp)")
    parser.add_argument("--reps", type=int, default=2, help="runs (--sipp)")
    parser.add_argument(
        "--saturate", action="store_true", help="TCP saturation with MI round trips only"
    )
    parser.add_argument(
        "--tcp-workers", type=int, default=None, help="[core] tcp_workers (default: the default)"
    )
    args = parser.parse_args()
    limit = raise_nofile()
    if limit < args.idle + 500:
        raise BenchError(f"open-files limit {limit} is too low for {args.idle} idle connections")

    workdir = Path(tempfile.mkdtemp(prefix="sipsock-bench-stream-"))
    pki = TestPKI(workdir / "pki")
    files = pki.issue("server", "localhost", "127.0.0.1")
    ports = {transport: free_port() for transport in TRANSPORTS}
    listen = ", ".join(f'"{t}:127.0.0.1:{p}"' for t, p in ports.items())
    extra = (
        f"[core]\nlisten = [{listen}]\nstream_idle_timeout = 3600.0\n"
        + ("" if args.tcp_workers is None else f"tcp_workers = {args.tcp_workers}\n")
        + "[websocket]\nping_interval = 0\n"
        # Thousands of idle connections from one address, none sending first:
        # above the default caps and header timeout of [limits].
        "[limits]\nmax_connections_per_ip = 1000000\nmax_connections_per_socket = 1000000\n"
        "header_timeout = 3600.0\n" + domain_toml("bench", files)
    )
    (workdir / "d").mkdir()
    daemon = Daemon(workdir / "d", extra=extra)
    daemon.start()
    try:
        from OpenSSL import SSL

        openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
        print(
            f"sipsock stream benchmark: daemon pid {daemon.pid}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {openssl}, "
            f"open-files limit {limit}, work directory {workdir}"
        )
        if args.sipp:
            sipp_t1(daemon, ports["tcp"], args, workdir)
        else:
            asyncio.run(main_async(args, daemon, ports, pki))
    finally:
        daemon.stop(timeout=60)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
