"""SIGTERM to the daemon's whole process group, as systemd's ``KillMode=control-group`` does.

Every process of the group (the control process and each UDP worker) gets the
signal at once. A clean stop logs no traceback and nothing critical, from any
process; the daemon exits 0 and no worker is left.

Which of a worker's two reasons to stop it acts on first (its own SIGTERM or
the control process's ``Shutdown``) is a race, so the stop is repeated
`ROUNDS` times, half of them with the dynamic worker paused (SIGSTOP) when the
signal arrives and resumed `PAUSE` seconds later: it then finds its SIGTERM
and the ``Shutdown`` waiting together, the order that logged a
``ReactorNotRunning`` traceback. A worker that ended on its own SIGTERM
while the control process was still closing sockets was started again (one
more process to stop, spawned during shutdown): that too is a finding.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

from tests.daemon import Daemon
from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import alive, worker_pid, worker_pids
from tests.tables import SocketTable

ROUNDS = 4
PAUSE = 1.0
STOP_LIMIT = 15.0
ALARMING = re.compile(r"Traceback|critical|ReactorNotRunning|Unhandled", re.IGNORECASE)


def _all_gone(pids: tuple[int, ...]) -> bool:
    return not any(alive(pid) for pid in pids)


def test_sigterm_to_the_process_group_stops_every_process_without_a_traceback(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'group.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    static = free_port()
    extra = f'[sockets_mgm]\nprocesses = 1\n[core]\nlisten = ["udp:127.0.0.1:{static}"]\n'
    findings: list[str] = []
    for round_ in range(1, ROUNDS + 1):
        paused = round_ % 2 == 0
        workdir = tmp_path / f"round{round_}"
        workdir.mkdir()
        daemon = Daemon(workdir, db_url=db_url, extra=extra)
        daemon.start(new_session=True)
        workers = worker_pids(daemon, "dynamic") + worker_pids(daemon, "static")
        assert len(workers) == 2
        dynamic = worker_pid(daemon, 1)
        assert dynamic is not None
        if paused:
            os.kill(dynamic, signal.SIGSTOP)
        os.killpg(daemon.pid, signal.SIGTERM)
        if paused:
            # The pause itself is what this round tests (not a wait for a condition).
            time.sleep(PAUSE)
            os.kill(dynamic, signal.SIGCONT)
        assert daemon.proc is not None
        try:
            status = daemon.proc.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.proc.wait(5)
            raise AssertionError(f"round {round_}: no stop within {STOP_LIMIT:g} s") from None
        poll_until(partial(_all_gone, tuple(workers)), 10, f"round {round_}: workers gone")
        log = daemon.log()
        bad = [line for line in log.splitlines() if ALARMING.search(line)]
        # A worker that ends during the stop must not be started again.
        bad += [line for line in log.splitlines() if "restarting it" in line]
        if status != 0 or bad:
            findings.append(f"round {round_} (paused: {paused}): exit {status}; {bad[:6]}")
        assert "sipsock stopped" in log
    assert not findings, "\n".join(findings)
