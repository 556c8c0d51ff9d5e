# mypy: disable-error-code="no-untyped-call"
"""The control side of a pool: binding, sending, updating, releasing, and the batches
it sends to live workers (fake AMP ends here; real workers in tests/integration).

Real loopback sockets; no worker process is started (the service is not).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sipsock.seams import ListenError
from sipsock.sockdef import parse_row
from sipsock.transport.sockopts import get_tos
from sipsock.workers.commands import (
    Adoption,
    AdoptSockets,
    AnnounceMany,
    ReleaseSockets,
    UpdateSockets,
    WithdrawMany,
    decode_adoptions,
    decode_entries,
    decode_updates,
    encode_failures,
)
from sipsock.workers.directory import SocketBook
from sipsock.workers.listener import PooledListener
from sipsock.workers.pool import UdpWorkerPool
from sipsock.workers.supervisor import WorkerProcess
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


def adopted_ports(data: bytes) -> list[tuple[int, int]]:
    """(key, port) of each socket of an `AdoptSockets` batch."""
    return [
        (key, adoption.sdef.port)
        for key, adoption in decode_adoptions(data)
        if isinstance(adoption, Adoption)
    ]


class FakeWorker:
    """A live worker's AMP end: records each command; answers at once or when told."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse = refuse
        self.calls: list[tuple[type, dict[str, Any]]] = []
        self.held: list[Deferred[Any]] = []
        self.hold_updates = False
        self.gone = False
        #: Never answers (a stopped process); answers later with `answer_late`.
        self.silent = False

    def callRemote(self, command: type, **arguments: Any) -> Deferred[Any]:
        self.calls.append((command, arguments))
        if self.silent:
            waiting: Deferred[Any] = Deferred()
            self.held.append(waiting)
            return waiting
        if self.gone:
            return Deferred.fromCoroutine(self._fail())
        if command is AdoptSockets:
            refused = {
                key: f"port {port} refused"
                for key, port in adopted_ports(arguments["sockets"])
                if port in self.refuse
            }
            return Deferred.fromCoroutine(self._answer({"failed": encode_failures(refused)}))
        if command is UpdateSockets:
            answer: Deferred[Any] = Deferred()
            answer.addCallback(lambda _: {"failed": encode_failures({})})
            if self.hold_updates:
                self.held.append(answer)
            else:
                answer.callback(None)
            return answer
        return Deferred.fromCoroutine(self._answer({}))

    async def _answer(self, value: dict[str, Any]) -> dict[str, Any]:
        return value

    async def _fail(self) -> None:
        raise ConnectionError("worker gone")

    def sent(self, command: type) -> list[dict[str, Any]]:
        return [arguments for kind, arguments in self.calls if kind is command]


def pool_with_workers(*fakes: FakeWorker) -> tuple[UdpWorkerPool, MemoryReactorClock]:
    clock = MemoryReactorClock()
    pool = UdpWorkerPool(len(fakes), "dynamic", None, reactor=clock)
    for seat, fake in zip(pool.seats, fakes, strict=True):
        process = WorkerProcess(pool.supervisor, seat)
        process.amp = fake  # type: ignore[assignment]
        process.connected = True
        seat.process = process
    return pool, clock


def turns(clock: MemoryReactorClock, count: int = 10) -> None:
    for _ in range(count):
        clock.advance(0)


def test_sockets_opened_in_one_turn_reach_each_worker_in_one_batch() -> None:
    first, second = FakeWorker(), FakeWorker()
    pool, clock = pool_with_workers(first, second)
    ports = [free_port() for _ in range(3)]
    results: list[Any] = []
    for slot, port in enumerate(ports):
        pool.open(parse_row(slot, f"udp:127.0.0.1:{port}"), slot).addBoth(results.append)
    assert results == []  # sent on the next turn, all together
    turns(clock)
    assert all(isinstance(r, PooledListener) for r in results)
    for fake, order in ((first, ports), (second, ports[1:] + ports[:1])):
        [adopt] = fake.sent(AdoptSockets)
        assert [port for _, port in adopted_ports(adopt["sockets"])] == order
        assert len(adopt["fds"]) == 3
        # A worker knows its own sockets from their adoption: no announcement too.
        assert fake.sent(AnnounceMany) == []
    for listener in results:
        listener.stop()
    turns(clock)
    assert [len(a["keys"]) for a in first.sent(ReleaseSockets)] == [3]
    assert all(port_is_free(port, udp=True) for port in ports)


def test_a_socket_refused_by_one_worker_fails_alone_and_is_released() -> None:
    port, refused = free_port(), free_port()
    pool, clock = pool_with_workers(FakeWorker(), FakeWorker(frozenset({refused})))
    results: list[Any] = []
    for slot, each in enumerate((port, refused)):
        pool.open(parse_row(slot, f"udp:127.0.0.1:{each}"), slot).addBoth(results.append)
    turns(clock)
    good, bad = results
    assert isinstance(good, PooledListener)
    assert isinstance(bad, Failure)
    assert isinstance(bad.value, ListenError)
    assert bad.value.reason == f"UDP worker dynamic/2 refused it: port {refused} refused"
    assert port_is_free(refused, udp=True)
    assert not port_is_free(port, udp=True)
    assert [lst.sdef.port for lst in pool.sockets.values()] == [port]
    good.stop()
    turns(clock)


def test_a_worker_gone_during_a_batch_is_no_refusal() -> None:
    gone = FakeWorker()
    gone.gone = True
    pool, clock = pool_with_workers(FakeWorker(), gone)
    port = free_port()
    results: list[Any] = []
    pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0).addBoth(results.append)
    turns(clock)
    [listener] = results
    assert isinstance(listener, PooledListener)  # the restarted worker gets it in its sync
    listener.stop()
    turns(clock)


def test_an_update_fires_once_every_worker_applied_it() -> None:
    first, second = FakeWorker(), FakeWorker()
    pool, clock = pool_with_workers(first, second)
    port = free_port()
    results: list[Any] = []
    pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0).addBoth(results.append)
    turns(clock)
    [listener] = results
    first.hold_updates = second.hold_updates = True
    new = parse_row(1, f"udp:127.0.0.1:{port}", advertised="203.0.113.9:5999")
    updated: list[Any] = []
    listener.update(new).addBoth(updated.append)
    turns(clock)
    assert listener.sdef == new
    for fake in (first, second):
        [update] = fake.sent(UpdateSockets)
        assert decode_updates(update["sockets"]) == [(listener.key, new)]
    first.held.pop().callback(None)
    turns(clock)
    assert updated == []
    second.held.pop().callback(None)
    turns(clock)
    assert updated == [None]
    listener.stop()
    turns(clock)


def test_a_silent_worker_misses_its_deadline_is_reported_and_the_open_completes() -> None:
    answering, silent = FakeWorker(), FakeWorker()
    silent.silent = True
    pool, clock = pool_with_workers(answering, silent)
    for seat in pool.seats:
        assert seat.process is not None
        seat.process.state = "ready"
    port = free_port()
    results: list[Any] = []
    pool.open(parse_row(1, f"udp:127.0.0.1:{port}"), 0).addBoth(results.append)
    turns(clock)
    assert results == []
    clock.advance(pool.command_timeout)
    [listener] = results
    assert isinstance(listener, PooledListener)
    late = pool.seats[1].process
    assert late is not None and late.state == "late"
    [incident] = pool.incidents.since(0)
    assert incident == (
        "UDP worker dynamic/2 (pid None) did not answer AdoptSockets within 10 s: "
        "killed and replaced"
    )
    assert pool.processes() == [pool.seats[0].process]
    # A late answer is dropped (no AlreadyCalledError).
    for waiting in silent.held:
        waiting.callback({"failed": encode_failures({})})
    listener.stop()
    turns(clock)


def announced(fake: FakeWorker) -> list[str]:
    return [
        name for sent in fake.sent(AnnounceMany) for name, *_ in decode_entries(sent["entries"])
    ]


def test_other_sockets_are_announced_and_own_ones_never() -> None:
    book = SocketBook()
    worker = FakeWorker()
    clock = MemoryReactorClock()
    pool = UdpWorkerPool(1, "dynamic", None, book=book, reactor=clock)
    other = UdpWorkerPool(1, "static", None, book=book, reactor=clock)
    for seat, fake in ((pool.seats[0], worker), (other.seats[0], FakeWorker())):
        owner = pool if seat is pool.seats[0] else other
        process = WorkerProcess(owner.supervisor, seat)
        process.amp = fake  # type: ignore[assignment]
        process.connected = True
        seat.process = process
    own_port, other_port = free_port(), free_port()
    results: list[Any] = []
    pool.open(parse_row(1, f"udp:127.0.0.1:{own_port}"), 0).addBoth(results.append)
    other.open(parse_row(2, f"udp:127.0.0.1:{other_port}"), 1).addBoth(results.append)
    turns(clock)
    assert announced(worker) == [f"udp:127.0.0.1:{other_port}"]
    mine, theirs = results
    mine.update(parse_row(1, f"udp:127.0.0.1:{own_port}", tag="new"))
    theirs.update(parse_row(2, f"udp:127.0.0.1:{other_port}", tag="new"))
    turns(clock)
    assert announced(worker) == [f"udp:127.0.0.1:{other_port}"] * 2
    mine.stop()
    theirs.stop()
    turns(clock)
    assert [sent["sockets"] for sent in worker.sent(WithdrawMany)] == [
        [f"udp:127.0.0.1:{other_port}"]
    ]


def test_a_new_worker_gets_the_book_in_order_own_sockets_adopted() -> None:
    book = SocketBook()
    clock = MemoryReactorClock()
    pool = UdpWorkerPool(1, "dynamic", None, book=book, reactor=clock)
    ports = [free_port() for _ in range(4)]
    tcp = [parse_row(9, f"tcp:127.0.0.1:{port}") for port in ports[2:]]
    book.put(FakeListener(tcp[0]), static=True)  # type: ignore[arg-type]
    mine = [opened(pool, f"udp:127.0.0.1:{port}") for port in ports[:2]]
    book.put(FakeListener(tcp[1]))  # type: ignore[arg-type]
    fake = FakeWorker()
    process = WorkerProcess(pool.supervisor, pool.seats[0])
    process.amp = fake  # type: ignore[assignment]
    process.connected = True
    pool.seats[0].process = process
    pool.sync(process).addErrback(lambda _: None)  # the fake answers no Stats
    order = []
    for command, arguments in fake.calls:
        if command is AnnounceMany:
            order += [name for name, *_ in decode_entries(arguments["entries"])]
        elif command is AdoptSockets:
            order += [f"udp:127.0.0.1:{port}" for _, port in adopted_ports(arguments["sockets"])]
    assert order == [tcp[0].socket_text, *(m.sdef.socket_text for m in mine), tcp[1].socket_text]
    for listener in mine:
        listener.stop()
    turns(clock)


class FakeListener:
    def __init__(self, sdef: Any) -> None:
        self.sdef = sdef
        self.slot = None


class RecordedPools:
    """A dynamic pool and a static one sharing a book, each with one fake worker
    whose AMP calls are recorded in `order` ("mine X" / "theirs X"), and
    `listeners` open in the dynamic pool on `ports`."""

    def __init__(self, sockets: int) -> None:
        self.book = SocketBook()
        self.clock = MemoryReactorClock()
        self.pool = UdpWorkerPool(1, "dynamic", None, book=self.book, reactor=self.clock)
        other = UdpWorkerPool(1, "static", None, book=self.book, reactor=self.clock)
        self.order: list[str] = []
        self.mine, self.theirs = FakeWorker(), FakeWorker()
        for owner, fake, name in ((self.pool, self.mine, "mine"), (other, self.theirs, "theirs")):
            seat = owner.seats[0]
            process = WorkerProcess(owner.supervisor, seat)
            recorded = fake.callRemote

            def record(command: type, _name: str = name, _call: Any = recorded, **kw: Any) -> Any:
                self.order.append(f"{_name} {command.__name__}")
                return _call(command, **kw)

            fake.callRemote = record  # type: ignore[method-assign]
            process.amp = fake  # type: ignore[assignment]
            process.connected = True
            seat.process = process
        self.ports = [free_port() for _ in range(sockets)]
        self.listeners: list[Any] = []
        for slot, port in enumerate(self.ports):
            opening = self.pool.open(parse_row(slot, f"udp:127.0.0.1:{port}"), slot)
            opening.addBoth(self.listeners.append)
        turns(self.clock)
        assert all(isinstance(lst, PooledListener) for lst in self.listeners)
        self.order.clear()


def test_released_sockets_are_withdrawn_then_closed_by_the_workers_then_in_this_process() -> None:
    """The order a release keeps (a chain of callbacks per socket, not a coroutine):
    the other pools' workers forget the socket, then this pool's workers close it in
    one batch, then the control copy closes and the stop fires."""
    pools = RecordedPools(3)
    book, clock, pool, order = pools.book, pools.clock, pools.pool, pools.order
    ports, listeners = pools.ports, pools.listeners
    stopped: list[Any] = []
    for listener in listeners:
        listener.stop().addBoth(stopped.append)
    assert stopped == [] and not any(port_is_free(port, udp=True) for port in ports)
    turns(clock)
    assert order == ["theirs WithdrawMany", "mine ReleaseSockets"]
    assert stopped == [None, None, None]
    assert all(port_is_free(port, udp=True) for port in ports)
    assert pool.sockets == {} and book.entries() == []


def test_release_many_keeps_the_order_of_a_release_with_one_wait_for_the_batch() -> None:
    """`release_many`: the other pools' workers forget the sockets (one batch), then
    this pool's workers close them (one batch), then the control copies close and the
    one Deferred fires; a socket already closing is waited for, not released twice."""
    pools = RecordedPools(4)
    book, clock, pool, order = pools.book, pools.clock, pools.pool, pools.order
    ports, listeners, mine, theirs = pools.ports, pools.listeners, pools.mine, pools.theirs
    early: list[Any] = []
    listeners[0].stop().addBoth(early.append)
    released: list[Any] = []
    pool.release_many(listeners).addBoth(released.append)
    assert released == [] and not any(port_is_free(port, udp=True) for port in ports)
    turns(clock)
    assert order == ["theirs WithdrawMany", "mine ReleaseSockets"]  # one turn: one batch each
    withdrawn = [name for call in theirs.sent(WithdrawMany) for name in call["sockets"]]
    assert withdrawn == [lst.sdef.socket_text for lst in listeners]
    [release] = mine.sent(ReleaseSockets)
    assert release["keys"] == [lst.key for lst in listeners]  # each once
    assert early == [None] and released == [None]
    assert all(port_is_free(port, udp=True) for port in ports)
    assert pool.sockets == {} and book.entries() == []


def test_open_many_binds_each_adopts_in_one_batch_and_answers_each_in_place() -> None:
    """A batch open: a port in use and a refused socket fail alone, in their places;
    the others are adopted in one batch per worker and announced to the other pools
    before the batch answers."""
    book = SocketBook()
    clock = MemoryReactorClock()
    first, second = FakeWorker(), FakeWorker()
    pool = UdpWorkerPool(2, "dynamic", None, book=book, reactor=clock)
    other = UdpWorkerPool(1, "static", None, book=book, reactor=clock)
    elsewhere = FakeWorker()
    for owner, seat, fake in (
        (pool, pool.seats[0], first),
        (pool, pool.seats[1], second),
        (other, other.seats[0], elsewhere),
    ):
        process = WorkerProcess(owner.supervisor, seat)
        process.amp = fake  # type: ignore[assignment]
        process.connected = True
        seat.process = process
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    busy = taken.getsockname()[1]
    good, refused, last = free_port(), free_port(), free_port()
    second.refuse = frozenset({refused})
    ports = [good, busy, refused, last]
    results: list[Any] = []
    try:
        pool.open_many(
            [(parse_row(slot, f"udp:127.0.0.1:{port}"), slot) for slot, port in enumerate(ports)]
        ).addBoth(results.append)
        assert results == []  # sent on the next turn, all together
        turns(clock)
    finally:
        taken.close()
    [answer] = results
    assert [type(r) for r in answer] == [PooledListener, Failure, Failure, PooledListener]
    assert (answer[0].sdef.port, answer[3].sdef.port) == (good, last)
    assert isinstance(answer[1].value, ListenError)
    assert "in use" in answer[1].value.reason
    assert answer[2].value.reason == f"UDP worker dynamic/2 refused it: port {refused} refused"
    for fake in (first, second):
        [adopt] = fake.sent(AdoptSockets)
        assert sorted(port for _, port in adopted_ports(adopt["sockets"])) == sorted(
            [good, refused, last]
        )
    # The other pool's worker learnt every socket bound, in order (the refused one withdrawn).
    assert announced(elsewhere) == [f"udp:127.0.0.1:{p}" for p in (good, refused, last)]
    assert [lst.sdef.port for lst in pool.sockets.values()] == [good, last]
    assert port_is_free(refused, udp=True)
    for listener in (answer[0], answer[3]):
        listener.stop()
    turns(clock)
    assert all(port_is_free(port, udp=True) for port in (good, last))
