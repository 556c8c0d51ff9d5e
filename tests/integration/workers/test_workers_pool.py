# mypy: disable-error-code="no-untyped-call"
"""`UdpWorkerPool` with real worker processes, real descriptors and real loopback traffic.

The control process is this test process (its reactor); the workers are the
real ``python -m sipsock.workers`` processes. /proc shows who holds which
socket and how each worker registered it with epoll.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols import amp

from sipsock.apps import Dispatcher, Responder
from sipsock.apps.spec import freeze
from sipsock.config import load_config
from sipsock.deferreds import settle
from sipsock.sockdef import parse_row
from sipsock.transport import open_listener
from sipsock.workers import PooledListener, SocketBook, UdpWorkerPool
from sipsock.workers.commands import AdoptSockets
from sipsock.workers.supervision import Backoff
from sipsock.workers.supervisor import WorkerProcess
from tests.integration.workers.procfs import (
    alive,
    exclusive_udp_registrations,
    held_udp_inodes,
    socket_fds,
    udp_inodes,
)
from tests.net import free_port
from tests.polling import wait_until
from tests.sip_probe import options_request, port_is_free, status_of

reactor: Any = _reactor
REPO = Path(__file__).parents[3]
TIMEOUT = 30.0


def make_pool(
    tmp_path: Path,
    size: int = 2,
    balance: str = "shared",
    config: str = "",
    book: SocketBook | None = None,
    backoff: Backoff | None = None,
) -> UdpWorkerPool:
    path = tmp_path / f"workers-{free_port()}.toml"
    path.write_text(config)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return UdpWorkerPool(
        size,
        "dynamic",
        freeze(load_config(path)),
        balance=balance,
        book=book,
        reactor=reactor,
        env=env,
        backoff=backoff,
        stats_interval=0.2,
    )


def ready(pool: UdpWorkerPool) -> bool:
    return all(row["State"] == "ready" for row in pool.process_rows())


def pids(pool: UdpWorkerPool) -> list[int]:
    return [row["PID"] for row in pool.process_rows()]


@pytest_twisted.async_yield_fixture()
async def stopper() -> AsyncIterator[list[UdpWorkerPool]]:
    pools: list[UdpWorkerPool] = []
    yield pools
    for pool in pools:
        if pool.running:
            await pool.stopService()


async def started(pool: UdpWorkerPool, stopper: list[UdpWorkerPool]) -> UdpWorkerPool:
    stopper.append(pool)
    pool.startService()
    await wait_until(lambda: ready(pool), TIMEOUT)
    return pool


async def ask(port: int, clients: int = 1, host: str = "127.0.0.1") -> list[int | None]:
    """Send one OPTIONS from each of ``clients`` source ports; their answer statuses."""
    statuses: list[int | None] = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(clients):
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            sock.setblocking(False)
            sock.sendto(options_request(host, port, sock.getsockname()[1]), (host, port))
            answer: bytes | None = None
            deadline = reactor.seconds() + 5
            while answer is None and reactor.seconds() < deadline:
                try:
                    answer = sock.recv(65535)
                except BlockingIOError:
                    await deferLater(reactor, 0.01)
            statuses.append(status_of(answer) if answer else None)
    return statuses


@pytest_twisted.ensureDeferred
async def test_every_worker_reads_the_shared_descriptor_registered_exclusive(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0)
    [shared] = udp_inodes(port)
    assert held_udp_inodes(os.getpid(), port) == {shared}
    for pid in pids(pool):
        assert held_udp_inodes(pid, port) == {shared}
        assert exclusive_udp_registrations(pid, port) == [True]
        # The AMP socket, the relay channel's and the adopted one: nothing else leaked.
        assert len(socket_fds(pid)) == 3
    assert await ask(port, clients=10) == [200] * 10

    await listener.stop()
    for pid in pids(pool):
        assert held_udp_inodes(pid, port) == set()
    assert port_is_free(port, udp=True)


@pytest_twisted.ensureDeferred
async def test_reuseport_gives_each_worker_its_own_member_and_every_peer_an_answer(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path, balance="reuseport"), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0)
    members = [held_udp_inodes(pid, port) for pid in pids(pool)]
    assert all(len(m) == 1 for m in members)
    assert members[0] != members[1]
    assert udp_inodes(port) == members[0] | members[1]
    assert held_udp_inodes(os.getpid(), port) == set()
    # No unread member anywhere: the kernel's hash never lands on a dead end.
    assert await ask(port, clients=30) == [200] * 30

    # The control process sends through a worker.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        await listener.send(b"from the control process", peer.getsockname())
        assert peer.recvfrom(100) == (b"from the control process", ("127.0.0.1", port))

    await listener.stop()
    assert port_is_free(port, udp=True)


@pytest_twisted.ensureDeferred
async def test_an_ipv6_socket_is_served_by_every_worker(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port(host="::1")
    listener = await pool.open(parse_row(1, f"udp:[::1]:{port}"), 0)
    for pid in pids(pool):
        assert len(held_udp_inodes(pid, port)) == 1
    assert await ask(port, clients=6, host="::1") == [200] * 6
    await listener.stop()
    assert port_is_free(port, udp=True, host="::1")


@pytest_twisted.ensureDeferred
async def test_a_killed_worker_is_back_within_two_seconds_with_every_socket(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    ports = [free_port(), free_port()]
    for slot, port in enumerate(ports):
        await pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), slot)
    expected = sorted(f"udp:127.0.0.1:{p}" for p in ports)
    victim = pids(pool)[0]
    os.kill(victim, signal.SIGKILL)

    def back() -> bool:
        row = pool.process_rows()[0]
        return (
            row["PID"] not in (None, victim)
            and row["State"] == "ready"
            and sorted(row["Sockets"]) == expected
        )

    took = await wait_until(back, timeout=10)
    assert took < 2.0, f"worker back after {took:.2f} s"
    row = pool.process_rows()[0]
    assert (row["Restarts"], row["Last exit"]) == (1, "killed by signal 9 (SIGKILL)")
    for port in ports:
        assert len(held_udp_inodes(row["PID"], port)) == 1
        assert await ask(port, clients=4) == [200] * 4


@pytest_twisted.ensureDeferred
async def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    config = '[core]\napplication = "tests.no_such_module:App"\n'
    pool = make_pool(tmp_path, size=1, config=config, backoff=Backoff(base=0.3, cap=1.2))
    stopper.append(pool)
    pool.startService()
    await wait_until(lambda: pool.seats[0].restarts >= 3, timeout=20)
    seat = pool.seats[0]
    assert seat.last_exit == "exited with status 3"
    assert seat.quick_deaths >= 3
    assert pool.backoff.delay(seat.quick_deaths) >= 0.6
    await pool.stopService()
    assert pool.process_rows()[0]["State"] == "stopped"


class Collector(Protocol):
    """A TCP peer that keeps what it receives."""

    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


@pytest_twisted.ensureDeferred
async def test_a_udp_request_is_relayed_to_a_tcp_peer_through_send_stream(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    received: list[bytes] = []
    peer = reactor.listenTCP(
        0, Factory.forProtocol(lambda: Collector(received)), interface="127.0.0.1"
    )
    book = SocketBook()
    tcp_port = free_port()
    tcp = open_listener(
        parse_row(1, f"tcp:127.0.0.1:{tcp_port}", tag="relay"),
        5,
        Dispatcher(Responder()),
        reactor=reactor,
    )
    await book.track(tcp)
    config = (
        '[core]\napplication = "tests.integration.workers.relay_app:StreamRelay"\n'
        f'[application]\nvia = "relay"\nhost = "127.0.0.1"\nport = {peer.getHost().port}\n'
    )
    pool = await started(make_pool(tmp_path, size=1, config=config, book=book), stopper)
    port = free_port()
    await pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0)
    try:
        assert await ask(port) == [200]
        await wait_until(lambda: b"OPTIONS sip:" in b"".join(received), timeout=10)
        relayed = b"".join(received)
        assert b"Via: SIP/2.0/UDP 127.0.0.1:" in relayed
        assert tcp.counters.sent >= 1
    finally:
        await tcp.stop()
        await peer.stopListening()


@pytest_twisted.ensureDeferred
async def test_stopping_the_pool_ends_every_worker(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path, size=3), stopper)
    port = free_port()
    listener: PooledListener = await pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0)
    workers = pids(pool)
    assert all(alive(pid) for pid in workers)
    await listener.stop()
    await pool.stopService()
    assert not any(alive(pid) for pid in workers)
    assert port_is_free(port, udp=True)


def distinct_ports(count: int) -> list[int]:
    """``count`` different free UDP ports (below the ephemeral range, as `free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(tcp=False)
        if port not in ports:
            ports.append(port)
    return ports


async def burst(port: int, clients: int, host: str = "127.0.0.1") -> list[bytes | None]:
    """One OPTIONS from each of ``clients`` sockets, all sent before any answer is read."""
    socks: list[socket.socket] = []
    try:
        for _ in range(clients):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.bind((host, 0))
            sock.setblocking(False)
        for sock in socks:
            sock.sendto(options_request(host, port, sock.getsockname()[1]), (host, port))
        answers: list[bytes | None] = [None] * clients
        deadline = reactor.seconds() + 5
        while None in answers and reactor.seconds() < deadline:
            for index, sock in enumerate(socks):
                if answers[index] is None:
                    with contextlib.suppress(BlockingIOError):
                        answers[index] = sock.recv(65535)
            await deferLater(reactor, 0.005)
        return answers
    finally:
        for sock in socks:
            sock.close()


@pytest_twisted.ensureDeferred
async def test_sockets_opened_together_reach_each_worker_in_a_few_batches_and_all_answer(
    tmp_path: Path, stopper: list[UdpWorkerPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    sent: list[tuple[str, int]] = []
    call = WorkerProcess.call

    def counting(self: WorkerProcess, command: type[amp.Command], **arguments: Any) -> Any:
        if command is AdoptSockets:
            sent.append((self.label, len(arguments["fds"])))
        return call(self, command, **arguments)

    monkeypatch.setattr(WorkerProcess, "call", counting)
    ports = distinct_ports(300)
    opening = [pool.open(parse_row(n, f"udp:127.0.0.1:{p}"), n) for n, p in enumerate(ports)]
    listeners = [await each for each in opening]
    # 300 sockets: 128 + 128 + 44 per worker, not 300 round trips each.
    assert sorted(sent) == sorted((f"dynamic/{w}", n) for w in (1, 2) for n in (128, 128, 44))
    for pid in pids(pool):
        assert len(socket_fds(pid)) == 2 + len(ports)  # + AMP and relay channel
    for port in ports[::50]:
        assert await ask(port) == [200]
    await settle([listener.stop() for listener in listeners])
    assert all(port_is_free(port, udp=True) for port in ports)
    for pid in pids(pool):
        assert len(socket_fds(pid)) == 2  # AMP and relay channel


@pytest_twisted.ensureDeferred
async def test_a_worker_killed_during_a_batch_is_restarted_with_every_socket(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    ports = distinct_ports(300)
    victim = pids(pool)[0]
    opening = [pool.open(parse_row(n, f"udp:127.0.0.1:{p}"), n) for n, p in enumerate(ports)]
    # The batch goes out on the next turn; the worker dies while it arrives.
    reactor.callLater(0, os.kill, victim, signal.SIGKILL)
    listeners = [await each for each in opening]  # a dead worker is no refusal
    assert len(listeners) == len(ports)
    expected = sorted(f"udp:127.0.0.1:{p}" for p in ports)

    def back() -> bool:
        row = pool.process_rows()[0]
        return row["PID"] not in (None, victim) and row["State"] == "ready"

    await wait_until(back, timeout=15)
    await pool.refresh()
    assert [sorted(row["Sockets"]) for row in pool.process_rows()] == [expected, expected]
    for pid in pids(pool):
        assert len(socket_fds(pid)) == 2 + len(ports)  # + AMP and relay channel
    for port in ports[::60]:
        assert await ask(port, clients=3) == [200] * 3


@pytest_twisted.ensureDeferred
async def test_a_request_right_after_an_update_gets_the_new_address_from_every_worker(
    tmp_path: Path, stopper: list[UdpWorkerPool]
) -> None:
    pool = await started(make_pool(tmp_path), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"udp:127.0.0.1:{port}", advertised="192.0.2.1"), 0)
    assert all(b"192.0.2.1" in (a or b"") for a in await burst(port, 4))
    answered_by = set()
    for round_number in range(20):  # until both workers answered at least once
        advertised = f"198.51.100.{round_number + 1}:{5100 + round_number}"
        await listener.update(parse_row(1, f"udp:127.0.0.1:{port}", advertised=advertised))
        await pool.refresh()
        before = {row["PID"]: row["Handled"] for row in pool.process_rows()}
        answers = await burst(port, 20)
        assert all(a is not None and advertised.encode() in a for a in answers), answers
        await pool.refresh()
        after = {row["PID"]: row["Handled"] for row in pool.process_rows()}
        answered_by |= {pid for pid in after if after[pid] > before.get(pid, 0)}
        if len(answered_by) == 2:
            break
    assert len(answered_by) == 2, "one worker never answered: retry on a quieter machine"
