"""The UDP worker pool in the real daemon, driven by SIPp (issue "UDP worker pool").

``processes = 4`` workers share every dynamic UDP socket; ``ps`` lists them;
/proc shows which process holds which socket. Figures (failed calls after a
kill, time to come back) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.workers.procfs import alive, held_udp_inodes
from tests.net import free_port
from tests.sip_probe import options_request, options_udp, port_is_free, status_of
from tests.sipp import run_sipp, start_sipp
from tests.tables import SocketTable

REPO = Path(__file__).parents[3]
POOL = "[sockets_mgm]\nprocesses = 4\n"


def workers(daemon: Daemon, pool: str = "dynamic") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == pool]


def wait_for(daemon: Daemon, check: Any, timeout: float = 15.0) -> float:
    """Poll ``check(workers)`` until true; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while True:
        rows = workers(daemon)
        if check(rows):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"workers never matched within {timeout} s: {rows}")
        time.sleep(0.05)


def holding(expected: list[str]) -> Any:
    def check(rows: list[dict[str, Any]]) -> bool:
        return all(
            row["State"] == "ready" and sorted(row["Sockets"]) == sorted(expected) for row in rows
        )

    return check


@pytest.fixture
def sqlite_table(sqlite_url: str) -> SocketTable:
    table = SocketTable(sqlite_url)
    table.init()
    return table


def test_four_workers_answer_20000_options_from_one_peer_and_share_them(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable, tmp_path: Path
) -> None:
    port = free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, POOL)
    rows = workers(daemon)
    assert len(rows) == 4
    assert len({row["PID"] for row in rows}) == 4
    assert daemon.mi("ps")["Processes"][0]["PID"] == daemon.pid

    result = run_sipp(f"127.0.0.1:{port}", calls=20000, rate=2000, workdir=tmp_path, timeout=120)
    assert result.ok, result.output
    assert result.successful == 20000

    wait_for(daemon, lambda rows: sum(row["Handled"] for row in rows) >= 20000)
    handled = [row["Handled"] for row in workers(daemon)]
    print(f"\nOPTIONS handled per worker (20,000 at 2,000/s, one peer): {handled}")
    assert sum(1 for count in handled if count > 0) >= 2
    listed = daemon.mi("sockets_list", {"details": True})[0]
    assert listed["counters"]["received"] >= 20000


def test_reloads_while_sipp_sends_lose_nothing_and_leave_exactly_the_current_sockets(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable, tmp_path: Path
) -> None:
    steady = free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{steady}", tag="steady")
    daemon = daemon_factory(sqlite_url, POOL)
    churn = [free_port() for _ in range(6)]
    sipp = start_sipp(f"127.0.0.1:{steady}", calls=6000, rate=500, workdir=tmp_path, timeout=120)
    rows: list[int] = []
    reloads = 0
    while reloads < 30 or sipp.running():
        if rows:
            for row in rows:
                sqlite_table.delete(row)
            rows = []
        else:
            rows = [
                sqlite_table.insert(f"{'udp' if i % 3 else 'tcp'}:127.0.0.1:{port}")
                for i, port in enumerate(churn)
            ]
        report = daemon.reload()
        assert report["failed"] == [], report
        assert f"udp:127.0.0.1:{steady}" in report["kept"]
        reloads += 1
    result = sipp.wait()
    assert result.ok, result.output
    assert result.successful == 6000

    # End with half of the churned UDP sockets present, the others removed.
    kept_udp = [p for i, p in enumerate(churn) if i % 3 and i < 3]
    removed_udp = [p for i, p in enumerate(churn) if i % 3 and i >= 3]
    for row in rows:
        sqlite_table.delete(row)
    for port in kept_udp:
        sqlite_table.insert(f"udp:127.0.0.1:{port}")
    daemon.reload()
    current = [f"udp:127.0.0.1:{steady}"] + [f"udp:127.0.0.1:{p}" for p in kept_udp]
    wait_for(daemon, holding(current))
    for port in removed_udp:
        assert port_is_free(port, udp=True), f"port {port} still held"
        for worker in workers(daemon):
            assert held_udp_inodes(worker["PID"], port) == set()
    for port in [steady, *kept_udp]:
        for worker in workers(daemon):
            assert len(held_udp_inodes(worker["PID"], port)) == 1
        answer = options_udp(port)
        assert answer is not None
        assert status_of(answer) == 200


def test_a_worker_killed_during_traffic_is_back_within_two_seconds(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    for port in ports:
        sqlite_table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, POOL)
    current = [f"udp:127.0.0.1:{p}" for p in ports]
    sipp = start_sipp(f"127.0.0.1:{ports[0]}", calls=8000, rate=1000, workdir=tmp_path, timeout=120)
    wait_for(daemon, lambda rows: sum(row["Handled"] for row in rows) > 2000, timeout=30)
    victim = workers(daemon)[1]
    os.kill(victim["PID"], signal.SIGKILL)

    def back(rows: list[dict[str, Any]]) -> bool:
        row = rows[1]
        return (
            row["PID"] not in (None, victim["PID"])
            and row["Restarts"] == victim["Restarts"] + 1
            and holding(current)([row])
        )

    took = wait_for(daemon, back, timeout=10)
    result = sipp.wait()
    print(
        f"\nworker killed during 1,000 OPTIONS/s: back with every socket in {took:.2f} s; "
        f"SIPp: {result.successful} successful, {result.failed} failed"
    )
    assert took < 2.0
    assert workers(daemon)[1]["Last exit"] == "killed by signal 9 (SIGKILL)"
    assert "killed by signal 9" in daemon.log()
    # Only what the killed worker held can be lost, and SIPp retransmits it.
    assert result.failed <= 5, result.output
    assert result.successful + result.failed == 8000


def test_a_udp_request_reaches_a_tcp_peer_through_the_control_process(
    daemon_factory: DaemonFactory,
    sqlite_url: str,
    sqlite_table: SocketTable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    peer.bind(("127.0.0.1", 0))
    peer.listen(1)
    peer.settimeout(10)
    udp, tcp = free_port(), free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{udp}")
    sqlite_table.insert(f"tcp:127.0.0.1:{tcp}", tag="relay", advertised="198.51.100.9:5099")
    daemon = daemon_factory(
        sqlite_url,
        POOL + '[core]\napplication = "tests.integration.workers.relay_app:StreamRelay"\n'
        f'[application]\nvia = "relay"\nhost = "127.0.0.1"\nport = {peer.getsockname()[1]}\n',
    )
    try:
        answer = options_udp(udp)
        assert answer is not None
        assert status_of(answer) == 200
        connection, address = peer.accept()
        with connection:
            assert address[0] == "127.0.0.1"
            connection.settimeout(10)
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65535)
                assert chunk, "the relay connection closed early"
                received += chunk
    finally:
        peer.close()
    assert received.startswith(b"OPTIONS sip:")
    wait_for(daemon, lambda rows: sum(row["Handled"] for row in rows) >= 1)
    tcp_row = daemon.mi("sockets_list", {"details": True})[1]
    assert tcp_row["counters"]["sent"] >= 1


def test_sigterm_ends_every_worker_of_both_pools(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable
) -> None:
    dynamic, static = free_port(), free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{dynamic}")
    daemon = daemon_factory(
        sqlite_url,
        POOL + f'[core]\nlisten = ["udp:127.0.0.1:{static}"]\nudp_workers = 2\n',
    )
    pids = [row["PID"] for row in workers(daemon) + workers(daemon, "static")]
    assert len(pids) == 6
    assert len(workers(daemon, "static")) == 2
    for port in (dynamic, static):
        answer = options_udp(port)
        assert answer is not None
        assert status_of(answer) == 200
    assert daemon.stop() == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert port_is_free(dynamic, udp=True)
    assert port_is_free(static, udp=True)


def test_workers_exit_when_the_control_process_dies(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable
) -> None:
    port = free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, POOL)
    pids = [row["PID"] for row in workers(daemon)]
    os.kill(daemon.pid, signal.SIGKILL)
    assert daemon.proc is not None
    daemon.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if alive(pid)] == []
    assert port_is_free(port, udp=True)


def test_reuseport_mode_answers_many_peers_and_closes_removed_ports(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable, tmp_path: Path
) -> None:
    port, other = free_port(), free_port()
    sqlite_table.insert(f"udp:127.0.0.1:{port}")
    other_row = sqlite_table.insert(f"udp:127.0.0.1:{other}")
    daemon = daemon_factory(sqlite_url, POOL + 'udp_balance = "reuseport"\n')
    members = [held_udp_inodes(row["PID"], port) for row in workers(daemon)]
    assert all(len(m) == 1 for m in members)
    assert len(set().union(*members)) == 4
    assert held_udp_inodes(daemon.pid, port) == set()

    runs = [
        start_sipp(f"127.0.0.1:{port}", calls=500, rate=250, workdir=tmp_path) for _ in range(4)
    ]
    results = [run.wait() for run in runs]
    assert all(r.ok and r.successful == 500 for r in results), [r.output for r in results]

    sqlite_table.delete(other_row)
    assert daemon.reload()["removed"] == [f"udp:127.0.0.1:{other}"]
    assert port_is_free(other, udp=True)
    wait_for(daemon, holding([f"udp:127.0.0.1:{port}"]))


def burst(port: int, clients: int, timeout: float = 5.0) -> list[bytes | None]:
    """One OPTIONS from each of ``clients`` sockets, all sent before any answer is read."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(clients)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(timeout)
        for sock in socks:
            request = options_request("127.0.0.1", port, sock.getsockname()[1])
            sock.sendto(request, ("127.0.0.1", port))
        answers: list[bytes | None] = []
        for sock in socks:
            try:
                answers.append(sock.recv(65535))
            except TimeoutError:
                answers.append(None)
        return answers
    finally:
        for sock in socks:
            sock.close()


def test_a_request_right_after_the_reload_gets_the_new_address_from_every_worker(
    daemon_factory: DaemonFactory, sqlite_url: str, sqlite_table: SocketTable
) -> None:
    port = free_port()
    row = sqlite_table.insert(f"udp:127.0.0.1:{port}", advertised="192.0.2.1:5999")
    daemon = daemon_factory(sqlite_url, "[sockets_mgm]\nprocesses = 2\n")
    before = {w["PID"]: w["Handled"] for w in workers(daemon)}
    for round_number in range(10):
        advertised = f"198.51.100.{round_number + 1}:{5100 + round_number}"
        sqlite_table.update(row, advertised=advertised)
        assert daemon.reload()["updated"] == [f"udp:127.0.0.1:{port}"]
        # In place, and in every worker before the reload answered.
        answers = burst(port, 20)
        assert all(a is not None and advertised.encode() in a for a in answers), answers
    # Both workers answered some of those requests (statistics come every second).
    wait_for(daemon, lambda rows: all(r["Handled"] > before[r["PID"]] for r in rows))
