"""Reloads while traffic flows: an untouched socket loses nothing."""

from __future__ import annotations

from pathlib import Path

from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.sipp import start_sipp
from tests.tables import SocketTable

RELOADS = 200
CHURNING = 20


def test_200_reloads_of_20_sockets_lose_no_call_on_an_untouched_socket(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    steady = free_port()
    table.insert(f"udp:127.0.0.1:{steady}", tag="steady")
    daemon = daemon_factory(sqlite_url)
    ports = [free_port() for _ in range(CHURNING)]
    sipp = start_sipp(f"127.0.0.1:{steady}", calls=10000, rate=500, workdir=tmp_path, timeout=120)
    reloads = 0
    rows: list[int] = []
    while reloads < RELOADS or sipp.running():
        if rows:
            for row in rows:
                table.delete(row)
            rows = []
        else:
            rows = [
                table.insert(f"{'udp' if i % 2 else 'tcp'}:127.0.0.1:{port}")
                for i, port in enumerate(ports)
            ]
        report = daemon.reload()
        assert report["kept"][0] == f"udp:127.0.0.1:{steady}"
        assert report["failed"] == []
        reloads += 1
    result = sipp.wait()
    assert result.ok, result.output
    assert result.successful == 10000
    assert reloads >= RELOADS
