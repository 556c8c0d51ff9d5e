# mypy: disable-error-code="no-untyped-call"
"""An auto-scaled `StreamWorkerPool` with real stream worker processes and TCP clients (issue 20).

Scaling up: the new worker adopts the pool's listening sockets before it is
ready and accepts connections. Scaling down: the leaving worker stops
accepting at once (new connections go to the others) and keeps answering on
its open connections until they close, then exits well before the drain time.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import threads
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from sipsock.scaling import ScalingRule
from sipsock.sockdef import parse_row
from sipsock.workers.listener import PooledListener
from sipsock.workers.stream_drain import MAX_DRAIN
from sipsock.workers.stream_pool import StreamWorkerPool
from sipsock.workers.supervisor import WorkerProcess
from tests.integration.workers.test_stream_pool import (
    TIMEOUT,
    connect_and_ask,
    make_pool,
    owner_of,
    reactor,
    ready,
    started,
    stopper,  # noqa: F401 (the fixture)
)
from tests.net import free_port
from tests.polling import wait_until
from tests.sip_probe import TcpClient

#: Batches of connections opened until a worker holds some (the kernel may hand a
#: whole batch to one worker on a loaded machine).
BATCHES = 10
BATCH = 10


def rule(**fields: float | int | None) -> ScalingRule:
    values: dict[str, float | int | None] = {
        "min_processes": 1,
        "max_processes": 2,
        "up_load": 1.0,
        "up_cycles": 1,
        "up_within": 1,
        "down_load": None,
        "down_cycles": 1,
        "cycle": 0.2,
    }
    values.update(fields)
    return ScalingRule("test", **values)  # type: ignore[arg-type]


def held(pool: StreamWorkerPool) -> int:
    return sum(pool.held_by(p) for p in pool.supervisor.processes())


async def connect_until_held_by(
    pool: StreamWorkerPool, listener: PooledListener, port: int, process: WorkerProcess
) -> list[TcpClient]:
    """Connections (each answered an OPTIONS) until ``process`` holds some; all of them."""
    clients: list[TcpClient] = []
    for _ in range(BATCHES):
        batch, statuses = await threads.deferToThread(connect_and_ask, port, BATCH)
        clients += batch
        assert statuses == [200] * BATCH
        total = len(clients)
        await wait_until(
            lambda total=total: held(pool) == total,  # type: ignore[misc]
            TIMEOUT,
            "connections reported",
        )
        if pool.held_by(process):
            return clients
    raise AssertionError(f"worker {process.label} took none of {len(clients)} connections")


@pytest_twisted.ensureDeferred
async def test_a_worker_added_by_scaling_adopts_the_sockets_and_accepts(
    tmp_path: Path,
    stopper: list[StreamWorkerPool],  # noqa: F811
) -> None:
    pool = await started(make_pool(tmp_path, size=1), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    scaler = pool.auto_scale(rule(up_load=0.0))  # any load scales up
    scaler.startService()
    clients: list[TcpClient] = []
    try:
        await wait_until(lambda: len(pool.seats) == 2 and ready(pool), TIMEOUT, "grown to 2")
        _first, added = pool.supervisor.processes()
        assert added.seat.index == 2
        clients = await connect_until_held_by(pool, listener, port, added)
        scaling = pool.process_rows()[0]["Scaling"]
        assert scaling["Size"] == 2 and scaling["Changes"]["up"] == 1, scaling
        assert scaling["Load %"] is not None, scaling
    finally:
        scaler.stopService()
        for client in clients:
            client.close()
    await listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_leaving_worker_stops_accepting_and_serves_its_connections_until_closed(
    tmp_path: Path,
    stopper: list[StreamWorkerPool],  # noqa: F811
) -> None:
    pool = await started(make_pool(tmp_path, size=2), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    staying, leaving = pool.supervisor.processes()
    clients = await connect_until_held_by(pool, listener, port, leaving)
    more: list[TcpClient] = []
    lines: list[str] = []

    @provider(ILogObserver)
    def observe(event: dict[str, object]) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        held = [c for c in clients if owner_of(pool, listener, c) is leaving]
        assert held
        scaler = pool.auto_scale(rule(down_load=0.99))  # any load below 99 % shrinks
        scaler.startService()
        await wait_until(lambda: leaving.state == "retiring", TIMEOUT, "scale-down under way")
        # Its open connections keep answering while it drains...
        for _ in range(3):
            answers = await threads.deferToThread(lambda: [c.options() for c in held])
            assert answers == [200] * len(held)
        assert not leaving.ended.done
        # ... and every new connection goes to the worker that stays.
        more, statuses = await threads.deferToThread(connect_and_ask, port, 20)
        assert statuses == [200] * 20
        await wait_until(
            lambda: all(owner_of(pool, listener, c) is staying for c in more),
            TIMEOUT,
            "new connections reported by the staying worker",
        )
        closed_at = reactor.seconds()
        for client in held:
            client.close()
        await wait_until(lambda: leaving.ended.done, TIMEOUT, "the leaving worker exits")
        # It left when drained, not at the drain deadline.
        assert reactor.seconds() - closed_at < MAX_DRAIN / 2
        await wait_until(lambda: len(pool.seats) == 1, TIMEOUT, "one seat left")
        assert pool.supervisor.processes() == [staying]
        others = [c for c in clients + more if c not in held]
        answers = await threads.deferToThread(lambda: [c.options() for c in others])
        assert answers == [200] * len(others)
        scaler.stopService()
        # Its pool's kind in the log, not "UDP worker".
        assert f"stream worker stream/2 (pid {leaving.pid}) leaves the pool: draining" in lines
        assert not [line for line in lines if "UDP worker stream/" in line]
    finally:
        globalLogPublisher.removeObserver(observe)
        for client in clients + more:
            client.close()
    await listener.stop()


@pytest_twisted.ensureDeferred
async def test_a_connection_still_busy_at_the_drain_deadline_is_closed_and_the_client_reconnects(
    tmp_path: Path,
    stopper: list[StreamWorkerPool],  # noqa: F811
) -> None:
    # Drain time: stream_idle_timeout (2 s here), at most MAX_DRAIN.
    pool = await started(make_pool(tmp_path, size=2, config="stream_idle_timeout = 2.0\n"), stopper)
    port = free_port()
    listener = await pool.open(parse_row(1, f"tcp:127.0.0.1:{port}"), 0)
    staying, leaving = pool.supervisor.processes()
    clients = await connect_until_held_by(pool, listener, port, leaving)
    try:
        held = [c for c in clients if owner_of(pool, listener, c) is leaving]
        scaler = pool.auto_scale(rule(down_load=0.99))
        scaler.startService()
        await wait_until(lambda: leaving.state == "retiring", TIMEOUT, "scale-down under way")
        started_at = reactor.seconds()
        # Busy all along (an OPTIONS every 0.5 s, below the idle timeout): still
        # answered until the deadline, then closed by the leaving worker.
        statuses: list[int | None] = []
        while not leaving.ended.done and reactor.seconds() - started_at < TIMEOUT:
            statuses += await threads.deferToThread(lambda: [c.options() for c in held[:1]])
            await deferLater(reactor, 0.5, lambda: None)
        assert leaving.ended.done
        assert 2.0 <= reactor.seconds() - started_at < 2.0 + TIMEOUT / 2
        assert statuses[0] == 200
        scaler.stopService()
        # Its client reconnects: to the worker that stays.
        again, answers = await threads.deferToThread(connect_and_ask, port, len(held))
        clients += again
        assert answers == [200] * len(held)
        await wait_until(
            lambda: all(owner_of(pool, listener, c) is staying for c in again),
            TIMEOUT,
            "reconnected clients reported by the staying worker",
        )
    finally:
        for client in clients:
            client.close()
    await listener.stop()
