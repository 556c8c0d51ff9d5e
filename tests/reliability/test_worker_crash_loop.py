"""A crash loop: UDP workers killed with SIGKILL every 200 ms for 10 s under SIPp traffic.

Three workers share two dynamic UDP sockets. Every `KILL_INTERVAL` the loop
kills the current process of worker 1 or worker 2 (in turn; a worker waiting
for its restart is skipped); worker 3 is never killed.

What is guaranteed: worker 3 keeps reading both sockets the whole time, so
every datagram the kernel queues is read by a live worker. A killed worker
loses only what it had read and not answered yet (a few datagrams at most);
SIPp retransmits those after 500 ms and the retransmission is answered, so
no call fails. The pool backs off: a worker that keeps dying is restarted
after 0, 0.5, 1, 2, 4... s (`sipsock.workers.supervision.Backoff`), which
the log says, and once the loop stops every worker comes back with every
socket, with no descriptor left over in the control process.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import (
    daemon_park,
    snapshot,
    worker_pid,
    worker_rows,
)
from tests.sipp import start_sipp
from tests.tables import SocketTable

KILL_INTERVAL = 0.2
LOOP_SECONDS = 10.0
RATE = 100
RESTART = re.compile(
    r"UDP worker dynamic/(\d) \(pid \d+\) killed by signal 9 \(SIGKILL\) after [\d.]+ s; "
    r"restarting it in ([\d.]+) s"
)


@pytest.fixture
def crash_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def test_workers_killed_every_200_ms_back_off_and_all_come_back_with_every_socket(
    crash_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    ports = [free_port(), free_port()]
    for port in ports:
        table.insert(f"udp:127.0.0.1:{port}")
    daemon = crash_daemons(db_url, "[sockets_mgm]\nprocesses = 3\n")
    before = snapshot(daemon)
    survivor = worker_pid(daemon, 3)

    calls = int(RATE * (LOOP_SECONDS + 3))
    sipps = [
        start_sipp(f"127.0.0.1:{port}", calls=calls, rate=RATE, workdir=tmp_path, timeout=120)
        for port in ports
    ]
    kills = {1: 0, 2: 0}
    skipped = 0
    started = time.monotonic()
    for turn in range(1, int(LOOP_SECONDS / KILL_INTERVAL) + 1):
        index = 1 + turn % 2
        pid = worker_pid(daemon, index)
        if pid is None:
            skipped += 1
        else:
            try:
                os.kill(pid, signal.SIGKILL)
                kills[index] += 1
            except ProcessLookupError:
                skipped += 1
        # The kill rhythm itself (every KILL_INTERVAL), not a wait for a condition.
        time.sleep(max(0.0, started + turn * KILL_INTERVAL - time.monotonic()))
    loop_seconds = time.monotonic() - started
    results = [sipp.wait() for sipp in sipps]

    current = sorted(f"udp:127.0.0.1:{port}" for port in ports)

    def all_back() -> bool:
        rows = worker_rows(daemon)
        return len(rows) == 3 and all(
            row["State"] == "ready" and sorted(row["Sockets"]) == current for row in rows
        )

    back = poll_until(all_back, 60, "every worker ready with every socket", 0.1)
    after = snapshot(daemon)
    rows = worker_rows(daemon)
    delays = [(int(m[1]), float(m[2])) for m in RESTART.finditer(daemon.log())]
    successful = sum(r.successful for r in results)
    failed = sum(r.failed for r in results)
    print(
        f"\ncrash loop: {sum(kills.values())} kills in {loop_seconds:.1f} s "
        f"(worker 1: {kills[1]}, worker 2: {kills[2]}; {skipped} ticks found the worker "
        f"waiting for its restart); all back {back:.1f} s after the loop\n"
        f"restart delays (worker, s): {delays}\n"
        f"restarts per worker (ps): {[row['Restarts'] for row in rows]}\n"
        f"SIPp: 2 x {RATE}/s, {successful} successful, {failed} failed\n"
        f"before: {before.describe()}\nafter:  {after.describe()}"
    )
    for result in results:
        assert result.ok, result.output
        assert result.successful == calls
    assert worker_pid(daemon, 3) == survivor
    assert [row["Restarts"] for row in rows] == [kills[1], kills[2], 0]
    # Backing off: delays grow, so most ticks found nothing to kill.
    assert max(delay for _, delay in delays) >= 2.0, delays
    for index in (1, 2):
        mine = [delay for worker, delay in delays if worker == index]
        assert mine == sorted(mine), f"worker {index}: delays do not grow: {mine}"
    assert after.fds[daemon.pid] == before.fds[daemon.pid]
    assert sorted(after.fds.values()) == sorted(before.fds.values())
