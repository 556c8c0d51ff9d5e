# mypy: disable-error-code="no-untyped-call"
"""`Supervisor`: the Start handshake comes first with the frozen spec; who is killed, who not."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher

from sipsock.apps.spec import freeze
from sipsock.config import parse_config_text
from sipsock.incidents import Incidents
from sipsock.workers.commands import Start, WorkerError, decode_spec
from sipsock.workers.supervision import Backoff
from sipsock.workers.supervisor import Supervisor, SupervisorSettings, WorkerProcess

SPEC = freeze(parse_config_text("[application]\nserver = 'x'\n", source="/etc/s.toml"))


class Side:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.synced: list[WorkerProcess] = []

    def sync(self, process: WorkerProcess) -> Deferred[None]:
        self.synced.append(process)
        return defer.fail(self.failure) if self.failure else defer.succeed(None)

    def worker_ended(self, process: WorkerProcess) -> None:
        pass

    def send_for_worker(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        return defer.succeed({})

    def socket_count(self) -> int:
        return 2


class Worker:
    """A worker's AMP end: records commands; refuses Start when told to."""

    def __init__(self, refuse_start: bool = False) -> None:
        self.refuse_start = refuse_start
        self.calls: list[tuple[type, dict[str, Any]]] = []

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:
        self.calls.append((command, arguments))
        if command is Start and self.refuse_start:
            return defer.fail(WorkerError("/etc/s.toml: [core] application: no module"))
        return defer.succeed({})


class Transport:
    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


def handshake(worker: Worker, side: Side) -> tuple[WorkerProcess, Transport]:
    clock = MemoryReactorClock()
    settings = SupervisorSettings(python="python3", env={}, backoff=Backoff())
    supervisor = Supervisor(
        "dynamic", 1, SPEC, settings, side, reactor=clock, incidents=Incidents()
    )
    seat = supervisor.seats[0]
    process = WorkerProcess(supervisor, seat)
    process.amp = worker  # type: ignore[assignment]
    process.connected = True
    transport = Transport()
    process.transport = transport  # type: ignore[assignment]
    seat.process = process
    supervisor._handshake(process)
    return process, transport


def test_start_with_the_frozen_spec_is_the_first_command_then_the_sync() -> None:
    worker, side = Worker(), Side()
    process, transport = handshake(worker, side)
    (command, arguments), *_ = worker.calls
    assert command is Start
    assert decode_spec(arguments["spec"]) == SPEC
    assert side.synced == [process]
    assert process.state == "ready"
    assert process.seat.state == "ready"
    assert transport.signals == []


def test_a_worker_that_cannot_start_is_reported_and_left_to_exit() -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
    try:
        process, transport = handshake(Worker(refuse_start=True), Side())
    finally:
        globalLogPublisher.removeObserver(events.append)  # type: ignore[arg-type]
    assert process.state == "starting"
    assert transport.signals == []  # it exits by itself (status 3); the ready timer backs it
    [error] = [e for e in events if e.get("log_level") == LogLevel.error]
    assert "no module" in error["reason"]


def test_a_worker_that_cannot_take_the_sockets_is_killed() -> None:
    process, transport = handshake(Worker(), Side(WorkerError("port 5060 refused")))
    assert process.state == "starting"
    assert transport.signals == ["KILL"]
