"""A UDP worker that stops answering (SIGSTOP) costs one deadline, never a freeze.

Every command the control process sends a worker has a deadline
(``[core] worker_timeout``, `DEADLINE` here). A worker that misses it is
reported (log, and the reload report's ``workers``), killed and replaced; the
replacement adopts every socket again. The reload the late worker delayed
completes for the others; the statistics poll finds a worker stopped while
idle; and a daemon stopped while a worker is frozen still stops.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import alive, daemon_park, worker_pid, worker_rows
from tests.sip_probe import options_udp, status_of
from tests.tables import SocketTable

DEADLINE = 2.0
#: A reload held up by one late worker answers within the deadline and this margin.
MARGIN = 8.0
STOP_LIMIT = 3 * DEADLINE + 15.0


@pytest.fixture
def hung_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


@contextmanager
def frozen(pid: int) -> Iterator[int]:
    """``pid`` stopped (SIGSTOP) inside the block, resumed after it if still there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        # Resume it whatever happened (a killed process ignores this).
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _replaced(daemon: Any, index: int, old: int, sockets: list[str]) -> bool:
    rows = {row["Worker"]: row for row in worker_rows(daemon)}
    row = rows[index]
    return bool(
        row["PID"] not in (None, old)
        and row["State"] == "ready"
        and sorted(row["Sockets"]) == sorted(sockets)
        and not alive(old)
    )


def test_a_frozen_worker_is_killed_and_replaced_and_the_reload_completes(
    hung_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'hung.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    first, second, tcp = free_port(), free_port(), free_port(udp=False)
    table.insert(f"udp:127.0.0.1:{first}")
    daemon = hung_daemons(db_url, f"[core]\nworker_timeout = {DEADLINE}\n")
    late = worker_pid(daemon, 1)
    assert late is not None
    with frozen(late):
        table.insert(f"tcp:127.0.0.1:{tcp}")
        table.insert(f"udp:127.0.0.1:{second}")
        started = time.monotonic()
        report = daemon.reload()
        took = time.monotonic() - started

    udp = [f"udp:127.0.0.1:{first}", f"udp:127.0.0.1:{second}"]
    assert took < DEADLINE + MARGIN, f"reload took {took:.1f} s"
    assert sorted(report["added"]) == sorted([udp[1], f"tcp:127.0.0.1:{tcp}"]), report
    assert report["failed"] == [], report
    assert any("dynamic/1" in line and str(late) in line for line in report["workers"]), report
    poll_until(lambda: _replaced(daemon, 1, late, udp), 30, "worker 1 replaced, every socket")
    log = daemon.log()
    assert f"UDP worker dynamic/1 (pid {late}) did not answer" in log
    for port in (first, second):
        answer = options_udp(port, timeout=5)
        assert answer is not None and status_of(answer) == 200
    print(f"\nreload with worker 1 frozen: {took:.2f} s (deadline {DEADLINE:g} s)")


def test_a_worker_frozen_while_idle_is_found_by_the_statistics_poll(
    hung_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'idle.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon = hung_daemons(db_url, f"[core]\nworker_timeout = {DEADLINE}\n")
    late = worker_pid(daemon, 2)
    assert late is not None
    with frozen(late):
        took = poll_until(
            lambda: _replaced(daemon, 2, late, [f"udp:127.0.0.1:{port}"]),
            DEADLINE + 30,
            "frozen idle worker replaced",
        )
    assert "UDP worker dynamic/2" in daemon.log()
    print(f"\nidle frozen worker replaced after {took:.2f} s")


def test_sigterm_while_a_worker_is_frozen_stops_the_daemon(
    hung_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'stop.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    ports = [free_port(), free_port()]
    for port in ports:
        table.insert(f"udp:127.0.0.1:{port}")
    daemon = hung_daemons(db_url, f"[core]\nworker_timeout = {DEADLINE}\n")
    pids = [worker_pid(daemon, 1), worker_pid(daemon, 2)]
    assert None not in pids
    late = pids[0]
    assert late is not None
    with frozen(late):
        started = time.monotonic()
        status = daemon.stop(timeout=STOP_LIMIT)
    took = time.monotonic() - started
    assert status == 0, daemon.log()
    poll_until(lambda: not any(alive(pid) for pid in pids if pid), 10, "no worker left")
    print(f"\nSIGTERM with worker 1 frozen: stopped in {took:.2f} s")
