"""An auto-scaled stream worker pool in the real daemon (issue 20): ``ps``, ``/metrics``, log.

The profile scales up on any load (``scale_up_load = 0``), so the pool goes
from its minimum 1 to its maximum 2 within a few cycles; the new worker
accepts TCP connections like the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_autoscaling import metrics
from tests.net import free_port
from tests.polling import poll_until
from tests.sip_probe import TcpClient

PROFILE = """
[auto_scaling.streams]
min_processes = 1
max_processes = 2
scale_up_load = 0
scale_up_cycles = 1
scale_up_within = 1
cycle = 0.2
"""
#: Connections opened, in batches, until the new worker holds some.
BATCHES = 10
BATCH = 10


def stream_rows(daemon: Daemon) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == "stream"]


def settled_at(daemon: Daemon, size: int) -> bool:
    rows = stream_rows(daemon)
    return len(rows) == size and all(row["State"] == "ready" for row in rows)


def test_the_stream_pool_grows_by_its_profile_and_the_new_worker_accepts(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    daemon = daemon_factory(
        sqlite_url,
        f'[core]\nlisten = ["tcp:127.0.0.1:{port}"]\ntcp_auto_scaling_profile = "streams"\n'
        + PROFILE,
    )
    poll_until(lambda: settled_at(daemon, 2), 30, "the stream pool grows to 2")
    summary = stream_rows(daemon)[0]["Scaling"]
    assert summary["Size"] == 2 and summary["Changes"]["up"] == 1, summary
    clients: list[TcpClient] = []
    try:
        for _ in range(BATCHES):
            batch = [TcpClient(port, timeout=5.0) for _ in range(BATCH)]
            clients += batch
            assert [client.options() for client in batch] == [200] * BATCH
            if stream_rows(daemon)[1]["Connections"]:
                break
        poll_until(
            lambda: all(row["Connections"] for row in stream_rows(daemon)),
            30,
            "both stream workers hold connections",
        )
    finally:
        for client in clients:
            client.close()
    text = metrics(daemon)
    assert 'sipsock_pool_size{pool="stream"} 2' in text
    assert 'sipsock_pool_scalings_total{pool="stream",action="up"} 1' in text
    log = daemon.log()
    assert "stream worker stream/2" in log and "ready with 1 socket(s)" in log
    assert "UDP worker stream/" not in log
