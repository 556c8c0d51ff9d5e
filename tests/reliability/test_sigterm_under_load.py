"""SIGTERM while SIPp sends to several dynamic UDP and TCP sockets.

The daemon must exit with status 0 within `STOP_LIMIT` seconds, every port
it held must be free, and none of its UDP worker processes may be left.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import alive, daemon_park, snapshot, worker_rows
from tests.sip_probe import port_is_free
from tests.sipp import start_sipp
from tests.tables import SocketTable

STOP_LIMIT = 5.0
UDP_SOCKETS = 3
TCP_SOCKETS = 2
RATE = 100


@pytest.fixture
def sigterm_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def test_sigterm_under_load_closes_every_socket_and_leaves_no_worker(
    sigterm_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'term.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    udp = [free_port() for _ in range(UDP_SOCKETS)]
    tcp = [free_port() for _ in range(TCP_SOCKETS)]
    for port in udp:
        table.insert(f"udp:127.0.0.1:{port}")
    for port in tcp:
        table.insert(f"tcp:127.0.0.1:{port}")
    daemon = sigterm_daemons(db_url)
    figures = snapshot(daemon)
    workers = figures.workers
    assert len(workers) == 2

    sipps = [
        start_sipp(f"127.0.0.1:{port}", calls=100_000, rate=RATE, workdir=tmp_path, timeout=120)
        for port in udp
    ] + [
        start_sipp(
            f"127.0.0.1:{port}",
            transport="t1",
            calls=100_000,
            rate=RATE,
            workdir=tmp_path,
            timeout=120,
        )
        for port in tcp
    ]
    try:
        poll_until(
            lambda: sum(row["Handled"] for row in worker_rows(daemon)) >= 3 * RATE,
            30,
            "UDP traffic reaching the workers",
            0.2,
        )
        listed = len(daemon.mi("sockets_list"))
        handled = sum(row["Handled"] for row in worker_rows(daemon))
        loaded = snapshot(daemon)
        assert daemon.proc is not None
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            status = daemon.proc.wait(STOP_LIMIT + 10)
        except subprocess.TimeoutExpired:
            status = None
        took = time.monotonic() - started
    finally:
        for sipp in sipps:
            if sipp.running():
                sipp.proc.kill()
            sipp.proc.wait(10)
    left = [pid for pid in workers if alive(pid)]
    held = [f"udp:{port}" for port in udp if not port_is_free(port, udp=True)]
    held += [f"tcp:{port}" for port in tcp if not port_is_free(port, udp=False)]
    print(
        f"\nSIGTERM under load: {UDP_SOCKETS} UDP + {TCP_SOCKETS} TCP sockets "
        f"({listed} listed), SIPp {RATE}/s on each, {handled} UDP messages handled; "
        f"exit status {status} "
        f"after {took:.2f} s; workers left {left}; ports still held {held}\n"
        f"at start: {figures.describe()}\nunder load: {loaded.describe()}"
    )
    assert status == 0, daemon.log()[-3000:]
    assert took < STOP_LIMIT
    assert left == []
    assert held == []
