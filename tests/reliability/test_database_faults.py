"""PostgreSQL faults: killed during a reload, down at start-up, the table dropped.

A PostgreSQL server of this module's own (tests/pg.py), since the tests kill
it. In every case the running sockets keep answering (a TCP connection made
before the fault keeps working), the error says what failed and where, and
the next reload after the repair works without restarting the daemon.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, MIError, child_pids
from tests.net import free_port, unread_at_server
from tests.pg import PostgresServer
from tests.polling import poll_until, settle
from tests.reliability.harness import (
    ProcessFigures,
    daemon_park,
    snapshot,
)
from tests.sip_probe import TcpClient, options_udp, status_of
from tests.tables import SocketTable


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fault_db(fault_postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the module's server (running again afterwards); yields its URL."""
    name = f"faults_{request.node.name[-40:].lower()}"
    if not fault_postgres.running:
        fault_postgres.start()
    url = fault_postgres.create_database(name)
    try:
        yield url
    finally:
        if not fault_postgres.running:
            fault_postgres.start()
        fault_postgres.resume()
        fault_postgres.drop_database(name)


@pytest.fixture
def db_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def kill_postgres(server: PostgresServer) -> list[int]:
    """SIGKILL the postmaster, then its children (a crash); the pids killed."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    children = child_pids(postmaster)
    os.kill(postmaster, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in [postmaster, *children]:  # SIGCONT lets a stopped process take the SIGKILL
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    # Until its parent reaps it, a dead postmaster's pid still exists and
    # blocks the next start ("lock file postmaster.pid already exists").
    poll_until(lambda: not any(exists(pid) for pid in [postmaster, *children]), 30, "postgres gone")
    server.running = False
    return [postmaster, *children]


def exists(pid: int) -> bool:
    """Whether ``pid`` exists, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_serving(udp_port: int, tcp_port: int, connection: TcpClient) -> None:
    answer = options_udp(udp_port)
    assert answer is not None and status_of(answer) == 200, "the UDP socket stopped answering"
    assert connection.options() == 200, "the TCP connection made before the fault broke"
    fresh = TcpClient(tcp_port)
    try:
        assert fresh.options() == 200, "the TCP socket refuses new connections"
    finally:
        fresh.close()


def settled(daemon: Daemon, before: ProcessFigures, timeout: float = 10) -> ProcessFigures:
    """The daemon's figures once its descriptor counts are back to ``before`` (or at timeout).

    Connections the test closed a moment ago may not be closed on the daemon's side yet.
    """
    settle(lambda: snapshot(daemon).fds == before.fds, timeout)
    return snapshot(daemon)


def reload_until_ok(daemon: Daemon, timeout: float) -> tuple[dict[str, Any], int]:
    """Reload until one succeeds (the report) and the number of attempts."""
    attempts = 0
    report: dict[str, Any] = {}
    errors: list[MIError] = []

    def reloaded() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            report.update(daemon.reload())
        except MIError as error:
            errors.append(error)
            return False
        return True

    if not settle(reloaded, timeout, 0.5):
        raise errors[-1]
    return report, attempts


def test_postgres_killed_during_a_reload_fails_it_clearly_and_sockets_keep_answering(
    db_daemons: Any, fault_postgres: PostgresServer, fault_db: str
) -> None:
    table = SocketTable(fault_db)
    table.init()
    udp, tcp, later = free_port(), free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon = db_daemons(fault_db)
    before = snapshot(daemon)
    connection = TcpClient(tcp)
    assert_serving(udp, tcp, connection)
    listed = daemon.mi("sockets_list")

    fault_postgres.pause()  # the reload's query waits on a frozen server...
    outcome: dict[str, Any] = {}

    def reload() -> None:
        try:
            outcome["report"] = daemon.reload()
        except MIError as error:
            outcome["error"] = error

    reloading = threading.Thread(target=reload)
    reloading.start()
    poll_until(
        lambda: unread_at_server(fault_postgres.port) > 0,
        10,
        "the reload's query reaching the frozen server",
    )
    assert reloading.is_alive(), f"the reload did not wait for the frozen server: {outcome}"
    killed = kill_postgres(fault_postgres)  # ...and the server dies under it
    reloading.join(30)
    assert not reloading.is_alive()
    error = outcome.get("error")
    assert isinstance(error, MIError), outcome
    assert f"127.0.0.1:{fault_postgres.port}" in error.message, error.message
    assert "unavailable" in error.message, error.message
    assert_serving(udp, tcp, connection)
    assert daemon.mi("sockets_list") == listed

    fault_postgres.start()
    row = table.insert(f"udp:127.0.0.1:{later}")
    report, attempts = reload_until_ok(daemon, 30)
    assert report["added"] == [f"udp:127.0.0.1:{later}"], report
    assert len(report["kept"]) == 2
    assert_serving(udp, tcp, connection)
    connection.close()
    table.delete(row)
    assert daemon.reload()["removed"] == [f"udp:127.0.0.1:{later}"]
    after = settled(daemon, before)
    print(
        f"\npostgres killed during a reload ({len(killed)} processes): reload failed with "
        f"{error.message!r}; sockets answered; {attempts} reload(s) after the restart\n"
        f"before: {before.describe()}\nafter:  {after.describe()}"
    )
    assert after.fds == before.fds


def test_daemon_started_while_postgres_is_down_serves_static_sockets_then_loads(
    db_daemons: Any, fault_postgres: PostgresServer, fault_db: str
) -> None:
    table = SocketTable(fault_db)
    table.init()
    dynamic, static = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{dynamic}")
    fault_postgres.stop()
    daemon = db_daemons(fault_db, f'[core]\nlisten = ["udp:127.0.0.1:{static}"]\nudp_workers = 1\n')
    answer = options_udp(static)
    assert answer is not None and status_of(answer) == 200
    assert options_udp(dynamic, timeout=0.5) is None
    log = daemon.log()
    line = next(line for line in log.splitlines() if "loading the dynamic sockets failed" in line)
    assert f"127.0.0.1:{fault_postgres.port}" in line, line
    assert "static sockets serve, retrying in" in line, line

    # A second failed attempt, then the database comes back: the delay grows meanwhile.
    poll_until(
        lambda: daemon.log().count("loading the dynamic sockets failed") >= 2,
        20,
        "a second attempt at loading the table",
    )
    fault_postgres.start()
    started = time.monotonic()

    def dynamic_open() -> bool:
        listed: list[dict[str, Any]] = daemon.mi("sockets_list")
        return listed == [{"socket": f"udp:127.0.0.1:{dynamic}"}]

    poll_until(dynamic_open, 60, "the dynamic socket opened after the database came back")
    took = time.monotonic() - started
    answer = options_udp(dynamic)
    assert answer is not None and status_of(answer) == 200
    retries = daemon.log().count("loading the dynamic sockets failed")
    poll_until(
        lambda: "dynamic sockets loaded at attempt" in daemon.log(), 10, "the recovery logged"
    )
    recovered = next(
        line for line in daemon.log().splitlines() if "dynamic sockets loaded at attempt" in line
    )
    print(
        f"\ndaemon started with postgres down: static socket served, {retries} failed "
        f"load(s) logged, dynamic socket up {took:.1f} s after postgres came back\n"
        f"first message: {line.split('] ', 1)[-1]}\n"
        f"recovery: {recovered.split('] ', 1)[-1]}"
    )
    assert f"after {retries} failed load(s)" in recovered, recovered
    assert "retrying in 4 s" in daemon.log()


def test_dropped_table_fails_reloads_clearly_until_it_is_created_again(
    db_daemons: Any, fault_postgres: PostgresServer, fault_db: str
) -> None:
    table = SocketTable(fault_db)
    table.init()
    udp, tcp = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon = db_daemons(fault_db)
    before = snapshot(daemon)
    connection = TcpClient(tcp)
    listed = daemon.mi("sockets_list")

    table.execute("DROP TABLE sockets")
    with pytest.raises(MIError) as failed:
        daemon.reload()
    message = failed.value.message
    assert "sockets" in message and "sipsock-db init" in message, message
    assert_serving(udp, tcp, connection)
    assert daemon.mi("sockets_list") == listed

    table.init()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    report = daemon.reload()
    assert sorted(report["kept"]) == sorted(entry["socket"] for entry in listed), report
    assert report["added"] == [] and report["removed"] == []
    assert_serving(udp, tcp, connection)
    connection.close()
    after = settled(daemon, before)
    print(
        f"\ntable dropped: reload failed with {message!r}; sockets kept answering; "
        f"the reload after re-creating it kept {len(report['kept'])} socket(s)\n"
        f"before: {before.describe()}\nafter:  {after.describe()}"
    )
    assert after.fds == before.fds


def test_frozen_postgres_fails_each_reload_within_db_timeout(
    db_daemons: Any, fault_postgres: PostgresServer, fault_db: str
) -> None:
    table = SocketTable(fault_db)
    table.init()
    udp, tcp = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon = db_daemons(fault_db, extra="[sockets_mgm]\ndb_timeout = 2\n")
    connection = TcpClient(tcp)
    listed = daemon.mi("sockets_list")

    fault_postgres.pause()  # SIGSTOP: connections open, nothing answers
    took: list[float] = []
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(MIError) as failed:
                daemon.reload()
            took.append(time.monotonic() - started)
            assert "no answer from" in failed.value.message and "within 2 s" in failed.value.message
    finally:
        fault_postgres.resume()
    print(f"\nfrozen PostgreSQL, db_timeout 2 s: reloads failed after {took} s")
    # Before: 2 s, then 4 s (the abandoned query of the last reload held the store).
    assert all(seconds < 3.0 for seconds in took), took
    assert_serving(udp, tcp, connection)
    assert daemon.mi("sockets_list") == listed
    report, _ = reload_until_ok(daemon, 20)
    assert sorted(report["kept"]) == sorted(entry["socket"] for entry in listed), report
    connection.close()
