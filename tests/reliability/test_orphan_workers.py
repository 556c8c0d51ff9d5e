"""No worker outlives its control process, and sockets that failed to open are retried.

SIGKILL of the control process while a UDP worker is stopped (SIGSTOP): the
kernel kills every worker with it (``PR_SET_PDEATHSIG``), so no orphan keeps
a port and a daemon started again opens every socket. A dynamic socket whose
port is taken when the daemon starts is listed with its error and attempts,
and opens by itself once the port is free, with no reload.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import alive, daemon_park, worker_pid
from tests.sip_probe import options_udp, port_is_free, status_of
from tests.tables import SocketTable

#: Seconds for the kernel to end the workers of a killed control process.
ORPHAN_LIMIT = 10.0
#: The registry's first retry comes 2 s after the failure, then 4, 8 ... (cap 30 s).
RETRY_LIMIT = 40.0


@pytest.fixture
def park(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def test_workers_die_with_a_killed_control_process_even_when_stopped(
    park: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'orphan.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    ports = [free_port(), free_port()]
    for port in ports:
        table.insert(f"udp:127.0.0.1:{port}")
    daemon = park(db_url)
    pids = [worker_pid(daemon, 1), worker_pid(daemon, 2)]
    assert None not in pids
    stopped = pids[0]
    assert stopped is not None and daemon.proc is not None
    os.kill(stopped, signal.SIGSTOP)
    try:
        daemon.proc.kill()
        daemon.proc.wait(10)
        poll_until(
            lambda: not any(alive(pid) for pid in pids if pid),
            ORPHAN_LIMIT,
            "every worker gone with its control process",
        )
    finally:
        # Whatever happened: no orphan may outlive the test.
        for pid in pids:
            with suppress(ProcessLookupError, TypeError):
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
    assert all(port_is_free(port, udp=True) for port in ports)
    again = park(db_url, name="again")
    listed = again.mi("sockets_list")
    assert [entry.get("error") for entry in listed] == [None, None], listed
    for port in ports:
        answer = options_udp(port, timeout=5)
        assert answer is not None and status_of(answer) == 200


def test_a_socket_whose_port_is_taken_at_start_opens_by_itself_once_it_is_free(
    park: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'retry.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    udp, tcp, free = free_port(), free_port(udp=False), free_port()
    squatters = [
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        socket.socket(socket.AF_INET, socket.SOCK_STREAM),
    ]
    try:
        squatters[0].bind(("127.0.0.1", udp))
        squatters[1].bind(("127.0.0.1", tcp))
        squatters[1].listen()
        table.insert(f"udp:127.0.0.1:{udp}")
        table.insert(f"tcp:127.0.0.1:{tcp}")
        table.insert(f"udp:127.0.0.1:{free}")
        daemon = park(db_url)
        busy = {f"udp:127.0.0.1:{udp}", f"tcp:127.0.0.1:{tcp}"}

        def errors() -> dict[str, str]:
            return {e["socket"]: e["error"] for e in daemon.mi("sockets_list") if "error" in e}

        first = errors()
        assert set(first) == busy, first
        assert all("attempt(s); next retry in" in reason for reason in first.values()), first
        poll_until(
            lambda: "attempt 2 to open it failed" in daemon.log(), RETRY_LIMIT, "a retry logged"
        )
        # A manual reload while they fail still works, and reports them failed.
        report = daemon.reload()
        assert {f["socket"] for f in report["failed"]} == busy, report
    finally:
        for squatter in squatters:
            squatter.close()
    took = poll_until(lambda: not errors(), RETRY_LIMIT, "both sockets open, no reload")
    answer = options_udp(udp, timeout=5)
    assert answer is not None and status_of(answer) == 200
    with socket.create_connection(("127.0.0.1", tcp), timeout=5):
        pass
    log = daemon.log()
    for name in busy:
        assert f"socket {name} slot" in log and "open at attempt" in log
    print(f"\nsockets open {took:.1f} s after their ports were freed")
