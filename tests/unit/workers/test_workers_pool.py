# mypy: disable-error-code="no-untyped-call"
"""The control side of a pool before any worker runs: binding, sending, updating, releasing.

Real loopback sockets; no worker process is started (the service is not).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from sipsock.sockdef import parse_row
from sipsock.transport.base import ListenError
from sipsock.transport.sockopts import get_tos
from sipsock.workers.directory import SocketBook
from sipsock.workers.pool import PooledListener, UdpWorkerPool, bind_member
from tests.net import free_port
from tests.sip_probe import port_is_free


def make_pool(balance: str = "shared", book: SocketBook | None = None) -> UdpWorkerPool:
    return UdpWorkerPool(
        2, "dynamic", None, balance=balance, book=book, reactor=MemoryReactorClock()
    )


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def opened(pool: UdpWorkerPool, text: str, slot: int | None = 0) -> PooledListener:
    results: list[Any] = []
    pool.open(parse_row(1, text), slot).addBoth(results.append)
    [result] = results
    if not isinstance(result, PooledListener):
        result.raiseException()
    assert isinstance(result, PooledListener)
    return result


def test_shared_mode_binds_in_the_control_process_and_sends_from_that_copy(
    peer: socket.socket,
) -> None:
    book = SocketBook()
    pool = make_pool(book=book)
    port = free_port()
    listener = opened(pool, f"udp:127.0.0.1:{port}")
    assert not port_is_free(port, udp=True)
    assert listener.fileno() >= 0
    assert book.find(f"udp:127.0.0.1:{port}") is listener

    listener.send(b"hello", peer.getsockname())
    data, source = peer.recvfrom(100)
    assert (data, source) == (b"hello", ("127.0.0.1", port))
    assert listener.counters.sent == 1

    listener.stop()
    assert port_is_free(port, udp=True)
    assert listener.fileno() == -1
    assert book.find(f"udp:127.0.0.1:{port}") is None
    assert pool.sockets == {}


def test_a_port_in_use_fails_the_open_with_the_reason() -> None:
    pool = make_pool()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(ListenError, match="port already in use"):
            opened(pool, f"udp:127.0.0.1:{port}")
    assert pool.sockets == {}


def test_a_pool_serves_udp_only() -> None:
    with pytest.raises(ListenError, match="UDP sockets only"):
        make_pool().bind(parse_row(1, "tcp:127.0.0.1:5060"), 0)


def test_update_applies_tos_on_the_shared_socket_and_refuses_another_endpoint() -> None:
    pool = make_pool()
    port = free_port()
    listener = opened(pool, f"udp:127.0.0.1:{port}")
    listener.update(parse_row(1, f"udp:127.0.0.1:{port}", tag="b", tos="IPTOS_LOWDELAY"))
    assert listener.sdef.tag == "b"
    assert listener.sock is not None
    assert get_tos(listener.sock, listener.sdef) == 16
    with pytest.raises(ValueError, match="cannot update in place"):
        listener.update(parse_row(1, f"udp:127.0.0.1:{free_port()}"))
    listener.stop()


def test_reuseport_mode_keeps_no_member_in_the_control_process() -> None:
    pool = make_pool("reuseport")
    port = free_port()
    listener = opened(pool, f"udp:127.0.0.1:{port}")
    # A member nobody reads would swallow its share of peers: none is kept.
    assert listener.fileno() == -1
    assert port_is_free(port, udp=True)
    errors: list[Any] = []
    listener.send(b"x", ("127.0.0.1", 9)).addErrback(errors.append)
    assert "no UDP worker is running" in errors[0].getErrorMessage()
    listener.stop()


def test_reuseport_mode_still_reports_a_port_held_by_someone_else() -> None:
    pool = make_pool("reuseport")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        with pytest.raises(ListenError, match="port already in use"):
            opened(pool, f"udp:127.0.0.1:{holder.getsockname()[1]}")


def test_members_of_one_group_share_the_port() -> None:
    sdef = parse_row(1, f"udp:127.0.0.1:{free_port()}")
    first, second = bind_member(sdef), bind_member(sdef)
    assert first.getsockname() == second.getsockname()
    first.close()
    second.close()


def test_ps_rows_before_start_show_every_worker_stopped() -> None:
    rows = make_pool().process_rows()
    assert [(r["Type"], r["PID"], r["State"], r["Restarts"]) for r in rows] == [
        ("UDP worker dynamic/1", None, "stopped", 0),
        ("UDP worker dynamic/2", None, "stopped", 0),
    ]


@pytest.mark.parametrize(
    ("size", "balance", "reason"),
    [(0, "shared", "size must be at least 1"), (1, "hash", "balance must be one of")],
)
def test_a_pool_with_bad_settings_is_refused(size: int, balance: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        UdpWorkerPool(size, "p", None, balance=balance, reactor=MemoryReactorClock())
