"""A reload storm: random add/remove/change of 50 rows while SIPp uses untouched sockets.

Each reload follows one to five seeded random edits of the table among 50
churning rows (add a row, remove one, change its tag, its port or its
protocol). SIPp sends OPTIONS over UDP and TCP to two sockets no edit
touches. Checked: no SIPp call fails, each reload keeps the untouched
sockets, slots follow the FIFO rule (`FifoSlotModel`), and once the table
is back as it started, every process holds as many descriptors as before.
Run with ``-s`` for the figures. ``bench/soak.py`` runs longer storms.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import (
    Churn,
    FifoSlotModel,
    daemon_park,
    finish_sipp,
    quiet_ports,
    snapshot,
)
from tests.sipp import start_sipp
from tests.tables import SocketTable

#: 1,000 reloads take 17-40 s here (2 cores shared with other test runs).
RELOADS = 1000
CHURNING = 50
MAX_SOCKETS = 100
SEED = 20261126


def slots_of(daemon: Daemon) -> dict[int, str]:
    listed: list[dict[str, Any]] = daemon.mi("sockets_list", {"details": True})
    return {entry["slot"]: entry["socket"] for entry in listed}


@pytest.fixture
def storm_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def test_reload_storm_loses_no_call_leaks_no_descriptor_and_keeps_slots_fifo(
    storm_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'storm.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    steady_udp, steady_tcp = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{steady_udp}", tag="steady")
    table.insert(f"tcp:127.0.0.1:{steady_tcp}", tag="steady")
    churn = Churn(table, quiet_ports(CHURNING + 10, SEED), random.Random(SEED), CHURNING)
    for _ in range(CHURNING // 2):
        churn.add()
    start_rows = dict(churn.rows)
    daemon = storm_daemons(db_url, f"[sockets_mgm]\nmax_sockets = {MAX_SOCKETS}\n")
    model = FifoSlotModel(MAX_SOCKETS, slots_of(daemon))
    before = snapshot(daemon)

    udp = start_sipp(
        f"127.0.0.1:{steady_udp}", calls=1_000_000, rate=100, workdir=tmp_path, timeout=300
    )
    tcp = start_sipp(
        f"127.0.0.1:{steady_tcp}",
        transport="t1",
        calls=1_000_000,
        rate=25,
        workdir=tmp_path,
        timeout=300,
    )
    kept = {f"udp:127.0.0.1:{steady_udp}", f"tcp:127.0.0.1:{steady_tcp}"}
    failed_opens: list[Any] = []
    started = time.monotonic()
    for _ in range(RELOADS):
        for _ in range(churn.rng.randint(1, 5)):
            churn.edit()
        report = daemon.reload()
        assert kept <= set(report["kept"]), report
        failed_opens += report["failed"]
        model.observe(slots_of(daemon))
        for sipp in (udp, tcp):
            assert sipp.running(), f"SIPp stopped during the storm:\n{sipp.wait().output}"
    storm_seconds = time.monotonic() - started
    results = [finish_sipp(udp), finish_sipp(tcp)]

    churn.restore(start_rows)
    daemon.reload()
    model.observe(slots_of(daemon))
    after = snapshot(daemon)

    def descriptors_back() -> bool:
        nonlocal after
        after = snapshot(daemon)
        return after.fds == before.fds

    try:
        poll_until(descriptors_back, 15, "descriptor counts back to their start")
    finally:
        handled = sum(r.successful for r in results)
        failed = sum(r.failed for r in results)
        print(
            f"\nreload storm: {RELOADS} reloads in {storm_seconds:.1f} s "
            f"({RELOADS / storm_seconds:.1f}/s), edits {churn.edits}, "
            f"{model.freed} slots freed, {model.allocated} handed out, "
            f"{len(failed_opens)} failed opens\n"
            f"SIPp: UDP 100/s + TCP 25/s, {handled} calls successful, {failed} failed\n"
            f"before: {before.describe()}\nafter:  {after.describe()}"
        )
    for result in results:
        assert result.failed == 0, result.output
        assert result.successful > 0, result.output
    # Another process may take one of the churning ports meanwhile: that is the only
    # failure allowed, and it is reported as such.
    assert failed_opens == []
    assert set(after.rss) == set(before.rss), "a worker was restarted during the storm"
