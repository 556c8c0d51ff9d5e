"""A scanner and a flood of garbage against a dynamic UDP socket.

SIPVicious's ``svmap`` scans the socket, then one Python thread sends random
bytes and real SIP messages cut at random points to it as fast as it can for
`FLOOD_SECONDS`. Meanwhile SIPp, a legitimate client, sends OPTIONS at a
moderate rate to another dynamic UDP socket served by the same workers.

What is guaranteed: the daemon stays up, the flooded socket answers again
as soon as the flood stops, the legitimate client on the other socket loses
nothing, and memory comes back to within 10% of its start with no descriptor
left over. What is not: legitimate traffic *on the flooded socket itself*
while the flood lasts. One Python sender outruns the workers here (about
130,000 datagrams/s sent, about 12,000/s read), so the kernel drops most
datagrams at that socket's receive queue, legitimate ones alike (a SIPp
client there lost about 9% of its calls in a trial run).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import (
    Flood,
    ProcessFigures,
    daemon_park,
    run_svmap,
    snapshot,
)
from tests.sip_probe import options_udp, status_of
from tests.sipp import run_sipp, start_sipp
from tests.tables import SocketTable

FLOOD_SECONDS = 10.0
LEGIT_RATE = 50
MEMORY_SLACK = 0.10


@pytest.fixture
def scanner_daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def log_bytes(daemon: Daemon) -> int:
    """Bytes in the daemon's log files, rotated ones included."""
    return sum(path.stat().st_size for path in daemon.workdir.glob("twistd.log*"))


def within(after: ProcessFigures, before: ProcessFigures, slack: float) -> bool:
    return all(after.rss.get(pid, 0) <= rss * (1 + slack) for pid, rss in before.rss.items())


def test_scanner_and_garbage_flood_leave_the_daemon_serving_with_its_memory(
    scanner_daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'scan.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    target, legit = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{target}", tag="exposed")
    table.insert(f"udp:127.0.0.1:{legit}", tag="trunk")
    daemon = scanner_daemons(db_url)
    warm = run_sipp(f"127.0.0.1:{legit}", calls=50, rate=50, workdir=tmp_path)
    assert warm.ok, warm.output
    before = snapshot(daemon)
    log_before = log_bytes(daemon)

    scan = run_svmap(target, tmp_path)
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert f"127.0.0.1:{target}" in scan.stdout, scan.stdout

    calls = int(LEGIT_RATE * (FLOOD_SECONDS + 2))
    sipp = start_sipp(
        f"127.0.0.1:{legit}", calls=calls, rate=LEGIT_RATE, workdir=tmp_path, timeout=120
    )
    flood = Flood("127.0.0.1", target, seconds=FLOOD_SECONDS).start()
    sent = flood.wait()
    result = sipp.wait()
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()[-3000:]
    answer = options_udp(target)
    counters = daemon.mi("sockets_list", {"details": True})[0]["counters"]
    logged = log_bytes(daemon) - log_before

    after = snapshot(daemon)

    def memory_back() -> bool:
        nonlocal after
        after = snapshot(daemon)
        return within(after, before, MEMORY_SLACK) and after.fds == before.fds

    try:
        poll_until(memory_back, 20, "memory and descriptors back to their start", 0.5)
    finally:
        print(
            f"\nscanner: svmap found {scan.stdout.count('sipsock/')} device(s)\n"
            f"flood: {sent.sent} datagrams in {sent.seconds:.1f} s ({sent.rate:,.0f}/s); "
            f"the daemon read {counters['received']} ({counters['parse_errors']} parse errors), "
            f"the kernel dropped the rest; the daemon logged {logged / 1e6:.1f} MB meanwhile\n"
            f"legitimate SIPp on another socket: {LEGIT_RATE}/s, {result.successful} successful, "
            f"{result.failed} failed\n"
            f"before: {before.describe()}\nafter:  {after.describe()}"
        )
    assert result.ok, result.output
    assert result.successful == calls
    assert answer is not None and status_of(answer) == 200
    assert set(after.rss) == set(before.rss), "a worker was restarted during the flood"
