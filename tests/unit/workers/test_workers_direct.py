# mypy: disable-error-code="no-untyped-call"
"""A worker's relays straight to a worker of the other pool, and the path each message takes.

The channels are `RelayChannel`s on real Twisted UNIX transports over real
socket pairs, driven by hand; the reactor's timers are a `Clock`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.unix import Server
from twisted.python.failure import Failure

from sipsock.workers.commands import (
    Relayed,
    WorkerError,
    decode_failures,
    decode_relays,
    encode_failures,
    encode_relays,
)
from sipsock.workers.direct import ANSWER_DEADLINE, DirectRoutes
from sipsock.workers.relaychannel import RelayChannel
from sipsock.workers.stream_pool import opener_index
from tests.unit.workers.test_workers_answerdeadline import CountingClock

TCP = "tcp:127.0.0.1:5071"
UDP = "udp:127.0.0.1:5060"
STATIC_UDP = "udp:127.0.0.1:5070"


class Peer:
    """The other worker's end of one channel: records each batch, answers when told."""

    def __init__(self, sock: socket.socket) -> None:
        from twisted.internet import reactor

        self.batches: list[list[Relayed]] = []
        self.answers: list[Deferred[bytes]] = []
        self.at_once = True
        sock.setblocking(False)
        self.channel = RelayChannel(self.serve, "the other end")
        self.transport = Server(sock, self.channel, None, None, 1, reactor)
        self.channel.makeConnection(self.transport)

    def serve(self, messages: bytes) -> Deferred[bytes]:
        self.batches.append(decode_relays(messages))
        if self.at_once:
            return defer.succeed(encode_failures({}))
        answer: Deferred[bytes] = Deferred()
        self.answers.append(answer)
        return answer

    def sent(self) -> list[bytes]:
        return [m.data for batch in self.batches for m in batch]


class Rig:
    """A worker's `DirectRoutes` with channels to peers, the control path recorded."""

    def __init__(self) -> None:
        from twisted.internet import reactor

        self.clock = Clock()
        self.control: list[tuple[str, bytes]] = []
        self.control_answers: list[Deferred[None]] = []
        self.held: dict[str, Any] = {}
        self.routes = DirectRoutes(
            self.clock, self.to_control, self.held.get, lambda name: name == STATIC_UDP
        )
        self.reactor = reactor
        self.ours: list[tuple[Server, RelayChannel]] = []

    def to_control(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        self.control.append((name, data))
        answer: Deferred[None] = Deferred()
        self.control_answers.append(answer)
        return answer

    def connect(self, pool: str, index: int) -> Peer:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.setblocking(False)
        channel = RelayChannel(self.routes.serve, f"direct channel to {pool} worker {index}")
        transport = Server(a, channel, None, None, 1, self.reactor)
        channel.makeConnection(transport)
        self.routes.add(channel, pool, index)
        self.ours.append((transport, channel))
        return Peer(b)

    def turn(self, *peers: Peer) -> None:
        """End of the reactor turn: batches go out, the peers read them and answer."""
        self.clock.advance(0)
        for peer in peers:
            why = peer.transport.doRead()
            if why is not None:
                peer.transport.connectionLost(Failure(why))
        for transport, _channel in self.ours:
            if transport.connected:
                why = transport.doRead()
                if why is not None:
                    transport.connectionLost(Failure(why))

    def close(self) -> None:
        for transport, _channel in self.ours:
            if transport.connected:
                transport.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def outcome(waiter: Deferred[Any]) -> Any:
    if not waiter.called:
        return "waiting"
    results: list[Any] = []
    waiter.addCallbacks(results.append, lambda f: results.append(f.value))
    return results[0]


def test_without_channels_every_relay_goes_through_the_control_process(rig: Rig) -> None:
    rig.routes.relay(TCP, b"INVITE", ("192.0.2.1", 5060))
    rig.routes.relay(UDP, b"200", ("192.0.2.2", 5060))
    assert rig.control == [(TCP, b"INVITE"), (UDP, b"200")]


def test_a_stream_send_goes_to_the_stream_worker_its_peer_hashes_to(rig: Rig) -> None:
    peers = [rig.connect("stream", 2), rig.connect("stream", 1)]  # seat order, not arrival
    by_seat = sorted(zip([2, 1], peers, strict=True))
    targets = [(f"192.0.2.{n}", 5060) for n in range(1, 9)]
    waiters = [rig.routes.relay(TCP, b"to " + p[0].encode(), p) for p in targets]
    rig.turn(*peers)
    for peer in targets:
        _, expected = by_seat[opener_index(peer, 2)]
        assert b"to " + peer[0].encode() in expected.sent()
    assert rig.control == []
    assert [outcome(w) for w in waiters] == [None] * len(targets)


def test_a_udp_send_goes_to_the_pool_that_holds_the_socket(rig: Rig) -> None:
    dynamic, static = rig.connect("dynamic", 1), rig.connect("static", 1)
    rig.routes.relay(UDP, b"dynamic one", ("192.0.2.1", 5060))
    rig.routes.relay(STATIC_UDP, b"static one", ("192.0.2.1", 5060))
    rig.routes.relay(TCP, b"no stream channel", ("192.0.2.1", 5060))
    rig.turn(dynamic, static)
    assert dynamic.sent() == [b"dynamic one"]
    assert static.sent() == [b"static one"]
    assert rig.control == [(TCP, b"no stream channel")]


def test_a_message_follows_the_path_of_the_earlier_ones_still_waiting(rig: Rig) -> None:
    peer = ("192.0.2.1", 5060)
    first = rig.routes.relay(TCP, b"1", peer)  # no channel yet: the control process
    stream = rig.connect("stream", 1)
    second = rig.routes.relay(TCP, b"2", peer)  # 1 still waits: the same way
    assert rig.routes.waiting(TCP, peer)
    rig.turn(stream)
    assert rig.control == [(TCP, b"1"), (TCP, b"2")]
    assert stream.sent() == []
    rig.control_answers[0].callback(None)
    rig.control_answers[1].callback(None)
    assert (outcome(first), outcome(second)) == (None, None)
    assert not rig.routes.waiting(TCP, peer)
    rig.routes.relay(TCP, b"3", peer)  # nothing waits: straight to the stream worker
    rig.turn(stream)
    assert stream.sent() == [b"3"]


def test_a_dead_worker_fails_what_waited_and_later_sends_go_through_the_control_process(
    rig: Rig,
) -> None:
    stream = rig.connect("stream", 1)
    stream.at_once = False
    peer = ("192.0.2.1", 5060)
    waiter = rig.routes.relay(TCP, b"lost", peer)
    rig.turn(stream)
    assert stream.sent() == [b"lost"]
    stream.transport.connectionLost(Failure(ConnectionDone()))  # the worker died
    rig.turn()
    error = outcome(waiter)
    assert isinstance(error, WorkerError)
    assert error.reason.startswith("direct channel to stream worker 1 closed")
    assert rig.routes.channels("stream") == []
    rig.routes.relay(TCP, b"after", peer)
    assert rig.control == [(TCP, b"after")]


def test_a_batch_the_other_worker_does_not_answer_fails_after_the_deadline(rig: Rig) -> None:
    stream = rig.connect("stream", 1)
    stream.at_once = False
    waiter = rig.routes.relay(TCP, b"stuck", ("192.0.2.1", 5060))
    rig.turn(stream)
    rig.clock.advance(ANSWER_DEADLINE)
    error = outcome(waiter)
    assert isinstance(error, WorkerError)
    assert error.reason == "direct channel to stream worker 1: no answer within 10 s"
    assert not rig.routes.waiting(TCP, ("192.0.2.1", 5060))


def test_batches_answered_in_time_share_one_answer_timer(rig: Rig) -> None:
    clock = CountingClock()
    rig.clock = clock
    rig.routes = DirectRoutes(clock, rig.to_control, rig.held.get, lambda name: name == STATIC_UDP)
    stream = rig.connect("stream", 1)
    for index in range(100):
        waiter = rig.routes.relay(TCP, b"%d" % index, ("192.0.2.1", 5060))
        rig.turn(stream)
        assert outcome(waiter) is None
        clock.advance(0.5)
    assert stream.sent() == [b"%d" % index for index in range(100)]
    # Timers of 0 s are the batcher's, one per turn. The answers' deadline:
    # one timer per ANSWER_DEADLINE of traffic (50 s here), not one per batch.
    answer_timers = [delay for delay in clock.asked if delay]
    assert set(answer_timers) == {ANSWER_DEADLINE}
    assert len(answer_timers) <= 50 / ANSWER_DEADLINE + 1


class Held:
    """A socket held by the serving worker: records its sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        self.sent.append((data, peer))
        if data == b"refused":
            return defer.fail(ConnectionRefusedError("Connection refused"))
        return defer.succeed(None)


def test_a_batch_is_sent_from_the_sockets_held_here_and_the_rest_through_the_control_process(
    rig: Rig,
) -> None:
    udp = rig.held[UDP] = Held()
    other = rig.connect("stream", 1)
    asked = other.channel.call(
        encode_relays(
            [
                Relayed(UDP, "192.0.2.1", 5060, b"200"),
                Relayed(UDP, "192.0.2.1", 5060, b"refused"),
                Relayed(STATIC_UDP, "192.0.2.1", 5060, b"not held here"),
            ]
        )
    )
    rig.turn()
    assert udp.sent == [(b"200", ("192.0.2.1", 5060)), (b"refused", ("192.0.2.1", 5060))]
    assert rig.control == [(STATIC_UDP, b"not held here")]
    rig.control_answers[0].callback(None)
    rig.turn(other)
    assert decode_failures(outcome(asked)) == {1: "Connection refused"}


class Routed:
    """A stream socket held by the serving worker, as `RoutedStream` answers `holds`."""

    def __init__(self, opens: bool) -> None:
        self.opens = opens  # True: the hashed worker opens the connection itself
        self.connected: set[tuple[str, int]] = set()
        self.sent: list[bytes] = []

    def holds(self, peer: tuple[str, int]) -> bool:
        return peer in self.connected

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        self.sent.append(data)  # through the control process, to whoever holds it
        if self.opens:
            self.connected.add(peer)
        return defer.succeed(None)


def stream_side(rig: Rig, routed: Routed) -> tuple[Server, Server]:
    """A stream worker's `DirectRoutes` holding ``routed``, on a channel to ``rig``'s worker."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours = RelayChannel(rig.routes.serve, "direct channel to stream worker stream/1")
    our_end = Server(a, ours, None, None, 1, rig.reactor)
    ours.makeConnection(our_end)
    rig.routes.add(ours, "stream", 1)
    held: dict[str, Any] = {TCP: routed}
    theirs_routes = DirectRoutes(rig.clock, rig.to_control, held.get, lambda name: False)
    theirs = RelayChannel(
        lambda messages: theirs_routes.serve(messages, theirs), "direct channel to dynamic/1"
    )
    their_end = Server(b, theirs, None, None, 1, rig.reactor)
    theirs.makeConnection(their_end)
    theirs_routes.add(theirs, "dynamic", 1)
    rig.ours.append((our_end, ours))
    rig.ours.append((their_end, theirs))
    return our_end, their_end


@pytest.mark.parametrize("opens", [False, True])
def test_a_peer_whose_connection_another_worker_holds_is_hinted_back(rig: Rig, opens: bool) -> None:
    routed = Routed(opens)
    stream_side(rig, routed)
    peer, other = ("192.0.2.1", 5060), ("192.0.2.2", 5060)
    first = rig.routes.relay(TCP, b"1", peer)
    rig.turn()  # the stream worker reads the batch and sends it on
    rig.turn()  # the worker reads its answer (and the hint, if any)
    assert outcome(first) is None
    assert routed.sent == [b"1"]
    rig.routes.relay(TCP, b"2", peer)
    rig.routes.relay(TCP, b"3", other)
    rig.turn()
    if opens:  # the hashed worker opened it: later messages go straight there
        assert routed.sent == [b"1", b"2", b"3"]
        assert rig.control == []
    else:  # held elsewhere: that peer's messages go through the control process now
        assert routed.sent == [b"1", b"3"]
        assert rig.control == [(TCP, b"2")]
