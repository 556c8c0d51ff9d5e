# mypy: disable-error-code="no-untyped-call"
"""`PooledListener`: the control copy of a pooled socket, closed once."""

from __future__ import annotations

import socket

from twisted.internet.testing import MemoryReactorClock

from sipsock.sockdef import parse_row
from sipsock.workers.listener import PooledListener
from sipsock.workers.pool import UdpWorkerPool


def test_the_control_copy_is_closed_once_and_then_reads_minus_one() -> None:
    pool = UdpWorkerPool(1, "dynamic", None, reactor=MemoryReactorClock())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener = PooledListener(pool, 1, parse_row(1, "udp:127.0.0.1:5060"), 0, sock)
    assert listener.fileno() == sock.fileno()
    listener.close_copy()
    listener.close_copy()
    assert listener.fileno() == -1
    assert sock.fileno() == -1
    held = PooledListener(pool, 2, parse_row(2, "udp:127.0.0.1:5061"), None, None, static=True)
    assert (held.fileno(), held.static, held.counters.received) == (-1, True, 0)
