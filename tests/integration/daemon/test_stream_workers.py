"""Stream workers in the real daemon (``[core] tcp_workers = 2``, the default), with SIPp.

SIPp ``-t tn`` (a connection per call) and ``-t t1`` (one connection) send
OPTIONS to a dynamic TCP socket; the ``ps`` rows of the ``stream`` pool show
which worker handled what.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.polling import poll_until, settle
from tests.sip_probe import TcpClient, tcp_answers_options
from tests.sipp import start_sipp
from tests.tables import SocketTable

TIMEOUT = 120
#: Connections opened at a time, and at most, until both stream workers hold some.
CLIENT_BATCH = 10
MAX_CLIENTS = 200


def stream_rows(daemon: Daemon) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == "stream"]


def start_daemon(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> tuple[Daemon, int]:
    (tmp_path / "var").mkdir(exist_ok=True)
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"tcp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url)
    assert [e["socket"] for e in daemon.mi("sockets_list")] == [f"tcp:127.0.0.1:{port}"]
    return daemon, port


def test_sipp_tn_and_t1_against_a_dynamic_tcp_socket_are_answered_by_both_workers(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    daemon, port = start_daemon(daemon_factory, sqlite_url, tmp_path)
    assert [row["State"] for row in stream_rows(daemon)] == ["ready", "ready"]
    calls = 400
    many = start_sipp(
        f"127.0.0.1:{port}",
        transport="tn",
        calls=calls,
        rate=200,
        workdir=tmp_path,
        timeout=TIMEOUT,
        extra=("-max_socket", "2000"),
    ).wait()
    assert (many.successful, many.failed) == (calls, 0), many.output
    one = start_sipp(
        f"127.0.0.1:{port}",
        transport="t1",
        calls=calls,
        rate=200,
        workdir=tmp_path,
        timeout=TIMEOUT,
    ).wait()
    assert (one.successful, one.failed) == (calls, 0), one.output
    poll_until(
        lambda: sum(row["Handled"] for row in stream_rows(daemon)) >= 2 * calls,
        15,
        "both runs counted by the workers",
        0.2,
    )
    handled = [row["Handled"] for row in stream_rows(daemon)]
    # tn: a connection per call, accepted by whichever worker waits: both get a share.
    assert all(count >= calls // 10 for count in handled), handled
    [entry] = daemon.mi("sockets_list", {"details": True})
    assert entry["counters"]["received"] == 2 * calls


def test_a_killed_stream_worker_loses_only_its_connections_and_service_is_back_within_2_s(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    daemon, port = start_daemon(daemon_factory, sqlite_url, tmp_path)
    clients: list[TcpClient] = []

    def both_workers_hold_connections() -> bool:
        counts = [row["Connections"] for row in stream_rows(daemon)]
        if sum(counts) != len(clients):
            return False  # the counters have not caught up yet
        if clients and 0 not in counts:
            return True
        # A busy machine may hand a whole batch to one worker: open more, bounded.
        if len(clients) < MAX_CLIENTS:
            batch = [TcpClient(port, timeout=5) for _ in range(CLIENT_BATCH)]
            clients.extend(batch)
            assert [client.options() for client in batch] == [200] * CLIENT_BATCH
        return False

    try:
        poll_until(both_workers_hold_connections, 30, "both workers hold connections", 0.3)
        victim = stream_rows(daemon)[0]
        held = victim["Connections"]
        os.kill(victim["PID"], signal.SIGKILL)
        killed_at = time.monotonic()

        # New connections are answered by the other worker within 2 s...
        poll_until(
            lambda: tcp_answers_options(port), 2.0, "a new connection answered after the kill", 0.05
        )
        poll_until(
            lambda: all(
                row["State"] == "ready" and row["PID"] != victim["PID"]
                for row in stream_rows(daemon)
            ),
            10,
            "the replacement is ready",
            0.05,
        )
        assert time.monotonic() - killed_at < 2.0
        # ... and only the killed worker's connections are gone.
        alive = 0
        for client in clients:
            try:
                alive += client.options() == 200
            except OSError:
                continue
        assert alive == len(clients) - held
        rows = stream_rows(daemon)
        assert rows[0]["Restarts"] == 1 and "SIGKILL" in rows[0].get("Last exit", "")
        # The replacement accepts too: with enough new connections both take some.
        fresh = [TcpClient(port, timeout=5) for _ in range(30)]
        assert [client.options() for client in fresh] == [200] * 30
        poll_until(
            lambda: stream_rows(daemon)[0]["Connections"] > 0,
            10,
            "the replacement holds connections",
            0.1,
        )
        for client in fresh:
            client.close()
    finally:
        for client in clients:
            client.close()


def test_tcp_workers_zero_serves_streams_in_the_control_process(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir(exist_ok=True)
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"tcp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, "[core]\ntcp_workers = 0\n")
    assert stream_rows(daemon) == []
    client = TcpClient(port, timeout=5)
    try:
        assert client.options() == 200
    finally:
        client.close()


def descriptors(daemon: Daemon) -> dict[str, int]:
    """Open descriptors of the control process and each stream worker seat."""
    counts = {"control": len(os.listdir(f"/proc/{daemon.pid}/fd"))}
    for row in stream_rows(daemon):
        counts[f"stream/{row['Worker']}"] = len(os.listdir(f"/proc/{row['PID']}/fd"))
    return counts


def test_stream_socket_churn_under_sipp_load_on_another_socket_fails_no_call_and_leaks_nothing(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    daemon, port = start_daemon(daemon_factory, sqlite_url, tmp_path)
    table = SocketTable(sqlite_url)
    before = descriptors(daemon)
    calls = 600
    load = start_sipp(
        f"127.0.0.1:{port}",
        transport="t1",
        calls=calls,
        rate=100,
        workdir=tmp_path,
        timeout=TIMEOUT,
    )
    for _ in range(8):
        churn = free_port()
        row = table.insert(f"tcp:127.0.0.1:{churn}")
        assert daemon.reload()["added"] == [f"tcp:127.0.0.1:{churn}"]
        probe = TcpClient(churn, timeout=5)  # every worker accepts on it once the reload answered
        try:
            assert probe.options() == 200
        finally:
            probe.close()
        table.delete(row)
        assert daemon.reload()["removed"] == [f"tcp:127.0.0.1:{churn}"]
    assert load.running(), "the load ended before the churn did"
    result = load.wait()
    assert (result.successful, result.failed) == (calls, 0), result.output

    # No growth (the control process's count moves by one with the MI's own HTTP connection).
    def settled() -> bool:
        now = descriptors(daemon)
        return now.keys() == before.keys() and all(now[k] <= before[k] for k in now)

    if not settle(settled, 15, 0.2):
        after = descriptors(daemon)
        listing = {
            pid: sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
            for pid in [daemon.pid] + [row["PID"] for row in stream_rows(daemon)]
        }
        raise AssertionError(f"descriptors {before} -> {after}: {listing}")
