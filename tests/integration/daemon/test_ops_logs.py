"""The real daemon's log: ``[core] log_level``, no per-request or factory lines at info,
flat JSON lines (workers' too)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import tests.daemon
from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_ops_metrics import metrics, of_socket
from tests.net import free_port
from tests.polling import poll_until
from tests.tables import SocketTable

SIPSOCK_MI = str(Path(sys.executable).with_name("sipsock-mi"))
#: Lines an operator should never see at the default level.
NOISE = (
    "Starting factory",
    "Stopping factory",
    "connection established",
    "connection lost",
    "object at 0x",
    "POST /mi",
    "GET /metrics",
)


def poke(daemon: Daemon) -> None:
    """What monitoring does all day: sipsock-mi calls, MI requests, /metrics scrapes."""
    for _ in range(3):
        done = subprocess.run(
            [SIPSOCK_MI, "-s", str(daemon.state_dir / "sipsock-mi.sock"), "which"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        daemon.mi("uptime")
        with urllib.request.urlopen(
            f"http://127.0.0.1:{daemon.http_port}/metrics", timeout=10
        ) as answer:
            answer.read()


def one_socket(sqlite_url: str, *extra_rows: str) -> int:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    for row in extra_rows:
        table.insert(row)
    return port


def test_default_level_logs_no_request_or_factory_lines(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    one_socket(sqlite_url)
    daemon = daemon_factory(sqlite_url)
    poke(daemon)
    assert daemon.stop() == 0
    text = daemon.log()
    assert "sockets reloaded in" in text
    noisy = [line for line in text.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, "\n".join(noisy)


def test_debug_level_shows_requests_and_twisteds_chatter(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    one_socket(sqlite_url)
    daemon = daemon_factory(sqlite_url, '[core]\nlog_level = "debug"\n')
    poke(daemon)
    poll_until(lambda: "GET /metrics 200" in daemon.log(), 10, "the /metrics access line")
    text = daemon.log()
    assert "#debug] POST /mi 200" in text
    assert "Starting factory" in text  # Twisted's chatter, at debug


def test_warn_level_hides_info_lines(
    daemon_factory: DaemonFactory, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_socket(sqlite_url, "sctp:127.0.0.1:5060")
    # At warn, the one line of the first load is the rejected row.
    monkeypatch.setattr(tests.daemon, "INITIAL_LOAD_DONE", ("row 2: socket 'sctp:",))
    daemon = daemon_factory(sqlite_url, '[core]\nlog_level = "warn"\n')
    poke(daemon)
    daemon.reload()
    assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert lines, "nothing logged"
    assert all("#warn]" in line or "#error]" in line for line in lines if "#" in line), lines
    assert not [line for line in lines if "sockets reloaded in" in line]


def records(daemon: Daemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in daemon.log().splitlines() if line.strip()]


def test_json_lines_are_flat_records_with_fields_workers_included(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    port = one_socket(sqlite_url)
    daemon = daemon_factory(sqlite_url, '[core]\nlog_format = "json"\n')
    socket = f"udp:127.0.0.1:{port}"

    def logged() -> list[dict[str, Any]]:
        return [r for r in records(daemon) if r.get("socket") == socket]

    poll_until(lambda: any("open" in r["message"] for r in logged()), 10, "the socket open line")
    poke(daemon)
    assert daemon.stop() == 0
    lines = records(daemon)
    for record in lines:
        assert list(record)[:4] == ["time", "level", "logger", "message"], record
        assert record["time"].endswith("Z") and "T" in record["time"], record
        assert record["level"] in ("debug", "info", "warn", "error", "critical"), record
        assert not [key for key in record if key.startswith("log_")], record
    opened = next(r for r in logged() if r["message"] == f"socket {socket} slot 0 open")
    assert opened["slot"] == 0
    assert opened["logger"] == "sipsock.registry.SocketRegistry"
    worker = [r for r in lines if "worker" in r and r["logger"].startswith("sipsock.worker")]
    assert worker, lines
    assert worker[0]["worker"].startswith("dynamic/")
    assert isinstance(worker[0]["pid"], int)
    assert not [r for r in lines if any(n in r["message"] for n in NOISE)]


def test_reloads_of_an_unchanged_table_do_not_relog_its_rejected_rows(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    table.insert(f"udp:127.0.0.1:{free_port()}")
    bad = [table.insert(f"sctp:127.0.0.1:{6000 + i}") for i in range(300)]
    daemon = daemon_factory(sqlite_url)
    reason = "protocol sctp is not a SIP transport"
    for _ in range(4):
        assert len(daemon.reload()["rejected"]) == 300
    table.insert(f"tcp:127.0.0.1:{free_port(udp=False)}")  # the table changes: a full reload
    assert len(daemon.reload()["rejected"]) == 300
    assert daemon.log().count(reason) == 300  # the first load's, once each
    table.update(bad[7], socket="udp:bad host")
    daemon.reload()
    assert daemon.log().count(reason) == 300
    assert daemon.log().count(f"row {bad[7]}: socket 'udp:bad host'") == 1
    assert "(299 rejected as before, not logged again)" in daemon.log()


def big_options(port: int, size: int) -> bytes:
    """An OPTIONS of about ``size`` bytes whose Via headers its answer must copy."""
    head = [
        f"OPTIONS sip:svc@127.0.0.1:{port} SIP/2.0",
        "From: <sip:probe@example.com>;tag=1",
        f"To: <sip:svc@127.0.0.1:{port}>",
        "Call-ID: big-1@example.com",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 70",
    ]
    vias: list[str] = []
    index = 0
    while sum(len(line) + 2 for line in head + vias) < size - 200:
        vias.append(f"Via: SIP/2.0/UDP 192.0.2.{index % 250 + 1}:5060;branch=z9hG4bK-{index:06d}")
        index += 1
    vias[0] = vias[0].replace("192.0.2.1:5060", "127.0.0.1:5060") + ";rport"
    lines = head[:1] + vias + head[1:]
    data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    vias[-1] += "x" * (size - len(data))  # its branch: exactly ``size`` bytes
    lines = head[:1] + vias + head[1:]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def test_replies_the_kernel_refuses_are_one_line_and_a_summary_not_one_line_each(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    port = one_socket(sqlite_url)
    daemon = daemon_factory(sqlite_url, "[limits]\nlog_interval = 1\n")
    # The answer copies every Via and adds about 110 bytes: above UDP's 65,507.
    datagram = big_options(port, 65500)
    assert len(datagram) == 65500

    def counted() -> tuple[int, int]:
        text = daemon.log()
        first = text.count("cannot send to")
        folded = sum(int(n) for n in re.findall(r"(\d+) more send failures in the last", text))
        return first, folded

    def drops() -> float:
        return of_socket(metrics(daemon), "sipsock_socket_drops_total", f"udp:127.0.0.1:{port}")

    # Sent in paced rounds until 150 answers were refused: on a busy machine the
    # kernel drops some requests before a worker reads them, and those are not
    # answered at all (bounded: 1,000 requests, 60 s).
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started = time.monotonic()
    sent, deadline = 0, started + 60
    try:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        while sent < 150 or drops() < 150:
            assert sent < 1000 and time.monotonic() < deadline, f"{drops()} drops of {sent}"
            for _ in range(50):
                sender.sendto(datagram, ("127.0.0.1", port))
                time.sleep(0.002)  # keep under the receive buffer
            sent += 50
    finally:
        sender.close()
    periods = int(time.monotonic() - started) + 3  # log periods of 1 s the sending spans

    # Every refused answer is a drop, and is in the log: in full or summed up.
    poll_until(
        lambda: drops() >= 150 and sum(counted()) == drops(),
        30,
        "every send failure logged or summed up",
    )
    first, folded = counted()
    assert 1 <= first <= 2 * periods, daemon.log()  # the first of each worker and period
    assert folded >= 100
    assert "message too long" in daemon.log()
