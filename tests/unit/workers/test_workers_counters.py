# mypy: disable-error-code="no-untyped-call"
"""`PoolCounters`: Stats read page by page, totals per socket, ended workers' counts kept."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from sipsock.apps.spec import freeze
from sipsock.config import default_settings
from sipsock.incidents import Incidents
from sipsock.seams import SocketCounters
from sipsock.sockdef import parse_row
from sipsock.workers.commands import (
    STATS_PAGE,
    SocketStats,
    Stats,
    encode_stats_page,
    encode_stats_rows,
)
from sipsock.workers.counters import PoolCounters
from sipsock.workers.reported import StatsReporter
from sipsock.workers.supervision import Backoff
from sipsock.workers.supervisor import Supervisor, SupervisorSettings, WorkerProcess


class Side:
    def sync(self, process: WorkerProcess) -> Deferred[None]:
        return defer.succeed(None)

    def worker_ended(self, process: WorkerProcess) -> None:
        pass

    def send_for_worker(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        return defer.succeed({})

    def socket_count(self) -> int:
        return 0


class Counting:
    """A worker's AMP end answering `Stats` with ``received`` per socket key."""

    def __init__(self, pid: int, received: dict[int, int]) -> None:
        self.pid = pid
        self.stats = [SocketStats(k, SocketCounters(received=v)) for k, v in received.items()]
        self.pages = 0

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:
        assert command is Stats
        self.pages += 1
        page, more = encode_stats_page(self.stats, arguments["start"])
        handled = sum(s.counters.received for s in self.stats)
        return defer.succeed({"pid": self.pid, "handled": handled, "sockets": page, "more": more})


class Reporting:
    """A worker's AMP end answering `Stats` as the worker does (`StatsReporter`)."""

    def __init__(self, pid: int, received: dict[int, int]) -> None:
        self.pid = pid
        self.counters = {k: SocketCounters(received=v) for k, v in received.items()}
        self.reporter = StatsReporter()
        self.rows_sent = 0
        self.fail_next = False

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:
        assert command is Stats
        if self.fail_next:
            self.fail_next = False
            return defer.fail(ConnectionError("late"))
        if arguments.get("changes"):
            page = self.reporter.changes(self.counters)
        else:
            page = self.reporter.full(self.counters, arguments["start"])
        self.rows_sent += len(page.rows)
        handled = sum(c.received for c in self.counters.values())
        return defer.succeed(
            {
                "pid": self.pid,
                "handled": handled,
                "sockets": encode_stats_rows(page.rows),
                "more": page.more,
                "gone": page.gone,
            }
        )


class Socket:
    def __init__(self, port: int) -> None:
        self.sdef = parse_row(1, f"udp:127.0.0.1:{port}")
        self.counters = SocketCounters()
        self.own = SocketCounters(sent=1)
        self.retired = SocketCounters()


def setup(*fakes: Counting | Reporting) -> tuple[PoolCounters, Supervisor, dict[int, Any]]:
    clock = MemoryReactorClock()
    settings = SupervisorSettings(python="python3", env={}, backoff=Backoff())
    supervisor = Supervisor(
        "dynamic",
        len(fakes),
        freeze(default_settings()),
        settings,
        Side(),
        reactor=clock,
        incidents=Incidents(),
    )
    for seat, fake in zip(supervisor.seats, fakes, strict=True):
        process = WorkerProcess(supervisor, seat)
        process.amp = fake  # type: ignore[assignment]
        process.connected = True
        process.state = "ready"
        process.pid = fake.pid
        seat.process = process
    sockets: dict[int, Any] = {}
    return PoolCounters(supervisor, sockets, reactor=clock, interval=1.0), supervisor, sockets


def test_refresh_pages_every_worker_and_adds_up_each_socket() -> None:
    many = dict.fromkeys(range(1, STATS_PAGE + 3), 1)
    first, second = Counting(101, many), Counting(102, {1: 5, 2: 7})
    counters, supervisor, sockets = setup(first, second)
    sockets.update({1: Socket(5060), 2: Socket(5061)})
    done: list[Any] = []
    counters.refresh().addCallback(done.append)
    assert done == [None]
    assert first.pages == 2  # two pages of Stats
    assert sockets[1].counters.received == 6
    assert sockets[1].counters.sent == 1  # the control process's own sends
    rows = counters.rows()
    assert [(r["PID"], r["State"], r["Handled"]) for r in rows] == [
        (101, "ready", len(many)),
        (102, "ready", 12),
    ]
    assert rows[1]["Sockets"] == ["udp:127.0.0.1:5060", "udp:127.0.0.1:5061"]

    # A worker that ends: what it counted stays, in its seat and in each socket.
    ended = supervisor.seats[1].process
    assert ended is not None
    ended.ended.fire()
    counters.worker_ended(ended)
    assert sockets[2].counters.received == 1 + 7
    assert counters.rows()[1]["Handled"] == 12
    assert counters.socket_name(99) == "released socket 99"


def test_after_the_first_answer_a_refresh_carries_only_what_changed() -> None:
    worker = Reporting(101, dict.fromkeys(range(1, STATS_PAGE + 3), 1))
    counters, _, sockets = setup(worker)
    sockets.update({1: Socket(5060), 2: Socket(5061)})
    counters.refresh()
    assert worker.rows_sent == STATS_PAGE + 2  # the first time: every socket
    assert sockets[1].counters.received == 1

    worker.rows_sent = 0
    counters.refresh()
    assert worker.rows_sent == 0  # nothing moved: nothing paged
    assert sockets[1].counters.received == 1
    assert len(counters.rows()[0]["Sockets"]) == STATS_PAGE + 2

    worker.counters[1].received = 9
    del worker.counters[2]
    counters.refresh()
    assert worker.rows_sent == 1
    assert sockets[1].counters.received == 9
    assert sockets[2].counters.received == 0  # released by the worker: not counted
    assert "udp:127.0.0.1:5061" not in counters.rows()[0]["Sockets"]

    # The control process's own sends count even when no worker's did.
    sockets[2].own.sent = 4
    counters.refresh()
    assert (sockets[1].counters.received, sockets[2].counters.sent) == (9, 4)
    sockets[3] = Socket(5062)  # a new socket: counted at once
    counters.refresh()
    assert sockets[3].counters.received == 1

    # A read that fails: the next one asks for every socket again.
    worker.fail_next = True
    counters.refresh()
    worker.rows_sent = 0
    worker.counters[1].received = 10
    counters.refresh()
    assert worker.rows_sent == STATS_PAGE + 1
    assert sockets[1].counters.received == 10
