# mypy: disable-error-code="no-untyped-call"
"""`StreamWorkerPool` with real stream worker processes and real TCP clients.

The control process is this test process (its reactor); the workers are real
``python -m sipsock.workers`` processes that adopt the listening descriptor
and accept on it. The control process never accepts: every answer comes
from a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet import threads

from sipsock.apps.spec import freeze
from sipsock.config import load_config
from sipsock.sockdef import parse_row
from sipsock.workers import SocketBook
from sipsock.workers.listener import PooledListener
from sipsock.workers.stream_pool import StreamWorkerPool
from sipsock.workers.supervisor import WorkerProcess
from tests.net import free_port
from tests.polling import wait_until
from tests.sip_probe import TcpClient, port_is_free

reactor: Any = _reactor
REPO = Path(__file__).parents[3]
TIMEOUT = 30.0


def make_pool(
    tmp_path: Path, size: int = 2, config: str = "", book: SocketBook | None = None
) -> StreamWorkerPool:
    path = tmp_path / f"stream-{free_port()}.toml"
    path.write_text(f"[core]\ntcp_workers = {size}\n{config}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return StreamWorkerPool(
        size,
        "stream",
        freeze(load_config(path)),
        book=book,
        reactor=reactor,
        env=env,
        stats_interval=0.2,
    )


def ready(pool: StreamWorkerPool) -> bool:
    return all(row["State"] == "ready" for row in pool.process_rows())


@pytest_twisted.async_yield_fixture()
async def stopper() -> AsyncIterator[list[StreamWorkerPool]]:
    pools: list[StreamWorkerPool] = []
    yield pools
    for pool in pools:
        if pool.running:
            await pool.stopService()


async def started(pool: StreamWorkerPool, stopper: list[StreamWorkerPool]) -> StreamWorkerPool:
    stopper.append(pool)
    pool.startService()
    await wait_until(lambda: ready(pool), TIMEOUT, "workers ready")
    return pool


def connect_and_ask(port: int, count: int) -> tuple[list[TcpClient], list[int | None]]:
    """``count`` connections at once, then one OPTIONS on each (blocking: run in a thread).

    A burst: which worker accepts each is up to the scheduler (one worker
    may take nearly all of them on a loaded machine).
    """
    clients = [TcpClient(port, timeout=5.0) for _ in range(count)]
    return clients, [client.options() for client in clients]


def connect_one_by_one(port: int, count: int) -> tuple[list[TcpClient], list[int | None]]:
    """``count`` connections, each answered before the next connects (run in a thread).

    Both workers wait in epoll_wait when each connection arrives, so the one
    at the head of the socket's wait queue takes it and re-registers behind
    the other: the workers take them in turn.
    """
    clients: list[TcpClient] = []
    statuses: list[int | None] = []
    for _ in range(count):
        clients.append(TcpClient(port, timeout=5.0))
        statuses.append(clients[-1].options())
    return clients, statuses


def split(pool: StreamWorkerPool) -> list[int]:
    """Ready connections each live worker reported holding."""
    return [pool.held_by(p) for p in pool.supervisor.processes()]


def owner_of(pool: StreamWorkerPool, listener: PooledListener, client: TcpClient) -> Any:
    return pool.directory.owner(listener.key, client.sock.getsockname())


@pytest_twisted.ensureDeferred
async def test_both_workers_accept_connections_and_the_control_process_holds_none(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    clients, statuses = await threads.deferToThread(connect_and_ask, port, 40)
    try:
        assert statuses == [200] * 40
        await wait_until(lambda: sum(split(pool)) == 40, TIMEOUT, "40 connections reported")
        shares = split(pool)
        assert all(share > 0 for share in shares), shares
        await pool.refresh()
        assert listener.counters.connections == 40
        assert listener.counters.received == 40
    finally:
        for client in clients:
            client.close()
    await wait_until(lambda: sum(split(pool)) == 0, TIMEOUT, "closed connections reported")
    await listener.stop()
    assert port_is_free(port, udp=False)


@pytest_twisted.ensureDeferred
async def test_a_send_from_the_control_process_goes_out_on_the_owning_workers_connection(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    clients: list[TcpClient] = []
    owners: set[Any] = set()
    try:
        # A loaded machine may hand a whole batch to one worker: connect more, bounded.
        while len(clients) < 120:
            batch, statuses = await threads.deferToThread(connect_and_ask, port, 12)
            clients.extend(batch)
            assert statuses == [200] * 12
            await wait_until(
                lambda: sum(split(pool)) == len(clients), TIMEOUT, "connections reported"
            )
            owners = {owner_of(pool, listener, client) for client in clients}
            if len(owners) == 2:
                break
        assert len(owners) == 2  # the test means something only across workers
        for index, client in enumerate(clients):
            message = f"NOTIFY {index}\r\n\r\n".encode()
            await listener.send(message, client.sock.getsockname())
            client.sock.settimeout(5)
            got = await threads.deferToThread(client.sock.recv, 100)
            assert got == message
    finally:
        for client in clients:
            client.close()
    await listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_peer_without_a_connection_gets_one_from_a_worker(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{free_port()}"), 0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(5)
        peer = server.getsockname()
        await listener.send(b"first\r\n\r\n", peer)
        conn, _ = await threads.deferToThread(server.accept)
        with conn:
            conn.settimeout(5)
            assert await threads.deferToThread(conn.recv, 100) == b"first\r\n\r\n"
            await wait_until(lambda: owner_of_peer(pool, listener, peer) is not None, TIMEOUT)
            # A second send reuses that connection, from whichever process asks.
            await listener.send(b"second\r\n\r\n", peer)
            assert await threads.deferToThread(conn.recv, 100) == b"second\r\n\r\n"
    await listener.stop()


def owner_of_peer(pool: StreamWorkerPool, listener: PooledListener, peer: Any) -> Any:
    return pool.directory.owner(listener.key, peer)


@pytest_twisted.ensureDeferred
async def test_a_killed_worker_loses_only_its_connections_and_is_replaced_accepting(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    clients, statuses = await threads.deferToThread(connect_one_by_one, port, 30)
    try:
        assert statuses == [200] * 30
        await wait_until(lambda: sum(split(pool)) == 30, TIMEOUT, "connections reported")
        await pool.refresh()
        received_before = listener.counters.received
        victim: WorkerProcess = pool.supervisor.processes()[0]
        survivor: WorkerProcess = pool.supervisor.processes()[1]
        lost = [c for c in clients if owner_of(pool, listener, c) is victim]
        kept = [c for c in clients if owner_of(pool, listener, c) is survivor]
        assert lost and kept and len(lost) + len(kept) == 30
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        started_at = reactor.seconds()
        await wait_until(
            lambda: ready(pool) and victim.seat.process is not victim,
            TIMEOUT,
            "replacement ready",
        )
        # At once (no back-off for a first death); generous for a loaded machine.
        assert reactor.seconds() - started_at < 10.0
        assert pool.held_by(victim) == 0
        # The survivor's connections still answer; new ones are accepted.
        answers = await threads.deferToThread(lambda: [c.options() for c in kept])
        assert answers == [200] * len(kept)
        more, more_statuses = await threads.deferToThread(connect_one_by_one, port, 20)
        assert more_statuses == [200] * 20
        await wait_until(
            lambda: len([p for p in pool.supervisor.processes() if pool.held_by(p)]) == 2,
            TIMEOUT,
            "the replacement accepts connections too",
        )
        for client in more:
            client.close()
        # What the killed worker counted and reported is kept.
        await pool.refresh()
        assert listener.counters.received >= received_before + len(kept) + 20
    finally:
        for client in clients:
            client.close()
    await listener.stop()


@pytest_twisted.ensureDeferred
async def test_removing_a_socket_closes_its_connections_and_leaves_the_other_open(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    gone_port, kept_port = free_port(), free_port()
    gone = await pool.open(parse_row(1, f"tcp:127.0.0.1:{gone_port}"), 0)
    kept = await pool.open(parse_row(2, f"tcp:127.0.0.1:{kept_port}"), 1)
    gone_clients, statuses = await threads.deferToThread(connect_and_ask, gone_port, 6)
    kept_clients, kept_statuses = await threads.deferToThread(connect_and_ask, kept_port, 6)
    assert statuses == kept_statuses == [200] * 6
    await gone.stop()
    for client in gone_clients:
        client.sock.settimeout(5)
        assert await threads.deferToThread(client.sock.recv, 100) == b""
        client.close()
    assert port_is_free(gone_port, udp=False)
    assert await threads.deferToThread(lambda: [c.options() for c in kept_clients]) == [200] * 6
    for client in kept_clients:
        client.close()
    await kept.stop()


def open_raw(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def still_open(sock: socket.socket) -> bool:
    """False once the server closed it (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False


@pytest_twisted.ensureDeferred
async def test_the_per_ip_cap_counts_connections_in_every_worker(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(
        make_pool(tmp_path, config="[limits]\nmax_connections_per_ip = 3\n"), stopper
    )
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    socks = await threads.deferToThread(open_raw, port, 12)
    try:
        await wait_until(
            lambda: sum(still_open(s) for s in socks) == 3, TIMEOUT, "3 connections left open"
        )
        await pool.refresh()
        assert listener.counters.limit_connections == 9
        assert pool.directory.inbound(listener.key) == 3
    finally:
        for sock in socks:
            sock.close()
    await listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_burst_of_sends_to_a_new_peer_uses_one_connection_in_order(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{free_port()}"), 0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(5)
        peer = server.getsockname()
        messages = [f"M {i}\r\n\r\n".encode() for i in range(200)]
        sending = [listener.send(message, peer) for message in messages]
        conn, _ = await threads.deferToThread(server.accept)
        with conn:
            conn.settimeout(5)
            expected = b"".join(messages)
            got = b""
            while len(got) < len(expected):
                chunk = await threads.deferToThread(conn.recv, 65536)
                assert chunk
                got += chunk
            assert got == expected
            for waiting in sending:
                await waiting
            # One reactor turn's sends reached their worker in one command, not one each.
            assert pool.sends.batches == 1
            server.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                extra, _ = server.accept()
                extra.close()
                raise AssertionError("a second connection was opened")
    await listener.stop()


def served_common_name(port: int, pki: Any) -> str:
    from tests.tlsfiles import peer_common_name, tls_connect

    with tls_connect(port, pki.client_context()) as sock:
        return peer_common_name(sock)


@pytest_twisted.ensureDeferred
async def test_tls_reload_switches_every_worker_or_none_and_names_the_one_that_failed(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    from sipsock.transport.tls import TLSDomains
    from sipsock.workers.stream_pool import PooledTLS
    from tests.tlsfiles import TestPKI, domain_toml

    pki = TestPKI(tmp_path / "pki")
    served = pki.issue("served", "old.example", "localhost")
    # The control process's copy of the domain reads other files than the workers'
    # (the only way to make one process fail where the others do not).
    control_copy = pki.issue("control", "old.example", "localhost")
    pool = await started(make_pool(tmp_path, config=domain_toml("main", served)), stopper)
    control_settings = load_config_text(tmp_path, domain_toml("main", control_copy))
    tls = PooledTLS(TLSDomains(control_settings.tls.domains), pool)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tls:127.0.0.1:{port}"), 0)
    names = await threads.deferToThread(lambda: {served_common_name(port, pki) for _ in range(8)})
    assert names == {"old.example"}

    # The workers' files broken: the control process loads, the workers do not; none switches.
    fresh = pki.issue("fresh", "new.example", "localhost")
    control_copy.certificate.write_bytes(fresh.certificate.read_bytes())
    control_copy.private_key.write_bytes(fresh.private_key.read_bytes())
    served.certificate.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    report = await tls.reload()
    assert not report.ok
    assert {process for process, _, _ in report.failed} == {
        "stream worker stream/1",
        "stream worker stream/2",
    }
    assert "old certificate" in report.summary() and "no process switched" in report.summary()
    assert tls.list_domains()[0]["subject"].startswith("CN=old.example")
    names = await threads.deferToThread(lambda: {served_common_name(port, pki) for _ in range(8)})
    assert names == {"old.example"}

    # Good files everywhere: every worker serves the new certificate.
    served.certificate.write_bytes(fresh.certificate.read_bytes())
    served.private_key.write_bytes(fresh.private_key.read_bytes())
    report = await tls.reload()
    assert report.ok and report.reloaded == ["main"]
    names = await threads.deferToThread(lambda: {served_common_name(port, pki) for _ in range(8)})
    assert names == {"new.example"}
    await listener.stop()


def load_config_text(tmp_path: Path, text: str) -> Any:
    path = tmp_path / f"control-{free_port()}.toml"
    path.write_text(text)
    return load_config(path)


def one_by_one(port: int, count: int) -> list[TcpClient]:
    """``count`` connections, each answered before the next one opens (idle workers)."""
    clients: list[TcpClient] = []
    for _ in range(count):
        client = TcpClient(port, timeout=5.0)
        assert client.options() == 200
        clients.append(client)
        time.sleep(0.02)  # every worker back in epoll_wait: both idle
    return clients


@pytest_twisted.ensureDeferred
async def test_connections_opened_one_at_a_time_go_to_the_idle_workers_in_turn(
    tmp_path: Path, stopper: list[StreamWorkerPool]
) -> None:
    # Without the turn, the first registered worker takes every connection that
    # comes while it is idle (measured: 60 of 60), and long-lived ones pile up there.
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    clients = await threads.deferToThread(one_by_one, port, 20)
    try:
        await wait_until(lambda: sum(split(pool)) == 20, TIMEOUT, "20 connections reported")
        assert min(split(pool)) >= 5, split(pool)
    finally:
        for client in clients:
            client.close()
    await listener.stop()
