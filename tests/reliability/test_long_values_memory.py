"""Long unique header lines and names do not grow a UDP worker's memory (issue 16.7).

Every memo of the SIP core (header-name spellings, keep-alive lines and
layouts, checked addresses) is keyed by what a peer sends. Bounded in
entries only, 4,500 OPTIONS each with a unique 60 kB line took a worker
from 49 to 523 MiB. Here one worker serves one dynamic UDP socket; a client
sends OPTIONS (the keep-alive shortcut) and INVITEs (the general path, 501)
that each carry a unique long header line and a unique long header name,
one at a time, and the worker's resident memory (from /proc) must stay
within `GROWTH_MIB` of what it was after a warm-up, while every message is
still answered.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import daemon_park, rss_kib, worker_pids
from tests.sip_probe import options_udp, status_of
from tests.tables import SocketTable

#: Messages sent with long unique values; each about `VALUE_SIZE` * 2 bytes.
MESSAGES = 1500
#: Bytes of the unique header line and of the unique header name of each message.
VALUE_SIZE = 24_000
#: Growth of the worker's RSS allowed (the memos hold a few MiB at most).
GROWTH_MIB = 48
#: Seconds the whole send loop may take.
DEADLINE = 240.0


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def long_request(method: str, port: int, local_port: int, number: int) -> bytes:
    unique = f"{number:08d}{uuid.uuid4().hex}"
    head = (
        f"{method} sip:svc@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{unique};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={number}\r\n"
        f"To: <sip:svc@127.0.0.1:{port}>\r\n"
        f"Call-ID: {unique}@probe\r\n"
        f"CSeq: 1 {method}\r\n"
    )
    line = f"Subject: {unique}{'v' * VALUE_SIZE}\r\n"
    name = f"X-{unique}{'n' * VALUE_SIZE}: 1\r\n"
    return (head + line + name + "Content-Length: 0\r\n\r\n").encode()


def test_long_unique_lines_and_names_leave_the_worker_memory_bounded(
    daemons: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'memo.sqlite'}"
    table = SocketTable(db_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", tag="memo")
    daemon = daemons(db_url, extra="[sockets_mgm]\nprocesses = 1\n")
    poll_until(lambda: options_udp(port) is not None, timeout=30, what="the socket answers")
    [worker] = worker_pids(daemon)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.bind(("127.0.0.1", 0))
        client.settimeout(5.0)
        local_port = client.getsockname()[1]

        def exchange(number: int) -> int | None:
            method = "OPTIONS" if number % 2 else "INVITE"
            client.sendto(long_request(method, port, local_port, number), ("127.0.0.1", port))
            try:
                data, _ = client.recvfrom(65535)
            except TimeoutError:
                return None
            return status_of(data)

        for number in range(100):  # warm-up: every memo and code path in use
            assert exchange(number) in (200, 501)
        before = rss_kib(worker)
        answers: dict[int | None, int] = {}
        deadline = time.monotonic() + DEADLINE
        for number in range(100, 100 + MESSAGES):
            if time.monotonic() > deadline:
                break
            status = exchange(number)
            answers[status] = answers.get(status, 0) + 1
        after = rss_kib(worker)

    assert sum(answers.values()) == MESSAGES, f"only {answers} within {DEADLINE:g} s"
    assert answers.get(None, 0) <= MESSAGES // 100, answers  # loopback: next to no loss
    assert set(answers) <= {200, 501, None}, answers
    growth = (after - before) / 1024
    print(f"worker RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB; answers {answers}")
    assert growth < GROWTH_MIB, f"worker RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB"
    assert worker_pids(daemon) == [worker]
    assert status_of(options_udp(port) or b"") == 200
