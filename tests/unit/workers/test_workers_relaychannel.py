# mypy: disable-error-code="no-untyped-call"
"""The relay channel: relay batches and their answers in plain frames on a UNIX socket pair.

Both ends are `RelayChannel`s on real Twisted UNIX transports over a real
socket pair, driven by hand (no reactor runs: ``doRead`` reads what the
other end wrote).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.unix import Server
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from sipsock.workers.commands import (
    Relayed,
    WorkerError,
    decode_failures,
    decode_relays,
    encode_failures,
    encode_relays,
)
from sipsock.workers.relaychannel import FRAME_HEAD, RelayChannel, unsent_bytes

PEER = ("127.0.0.1", 5080)


class End:
    """One end of the pair: a channel on a real UNIX transport, and what it served."""

    def __init__(self, sock: socket.socket, label: str, **limits: Any) -> None:
        from twisted.internet import reactor

        self.served: list[list[Relayed]] = []
        self.answers: list[Deferred[bytes]] = []
        self.answer_at_once = True
        self.lost = 0
        sock.setblocking(False)
        self.channel = RelayChannel(self.serve, label, **limits)
        self.channel.on_lost = self.on_lost
        self.transport = Server(sock, self.channel, None, None, 1, reactor)
        self.channel.makeConnection(self.transport)

    def serve(self, messages: bytes) -> Deferred[bytes]:
        batch = decode_relays(messages)
        self.served.append(batch)
        if self.answer_at_once:
            failed = {i: "refused" for i, m in enumerate(batch) if m.data == b"refuse"}
            return defer.succeed(encode_failures(failed))
        answer: Deferred[bytes] = Deferred()
        self.answers.append(answer)
        return answer

    def on_lost(self) -> None:
        self.lost += 1

    def read(self) -> None:
        """What the other end wrote, as the reactor would read it (a close included)."""
        why = self.transport.doRead()
        if why is not None:
            self.transport.connectionLost(Failure(why))

    def close(self) -> None:
        if self.transport.connected:
            self.transport.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def ends() -> Iterator[tuple[End, End]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = End(a, "relay channel to the control process")
    control = End(b, "relay channel to stream worker stream/1")
    yield worker, control
    worker.close()
    control.close()


def outcome(waiter: Deferred[Any]) -> Any:
    """What ``waiter`` fired with (its failure's exception), None while it waits."""
    if not waiter.called:
        return None
    results: list[Any] = []
    waiter.addCallbacks(results.append, lambda f: results.append(f.value))
    return results[0]


def batch(*datas: bytes) -> bytes:
    return encode_relays([Relayed("tcp:127.0.0.1:5071", *PEER, data) for data in datas])


def test_a_batch_crosses_and_its_answer_names_each_failed_message(ends: tuple[End, End]) -> None:
    worker, control = ends
    waiter = worker.channel.call(batch(b"INVITE", b"refuse", b"ACK"))
    assert worker.channel.waiting == 1
    control.read()
    assert [[m.data for m in b] for b in control.served] == [[b"INVITE", b"refuse", b"ACK"]]
    assert outcome(waiter) is None  # not answered before the answer is read
    worker.read()
    assert decode_failures(outcome(waiter)) == {1: "refused"}
    assert worker.channel.waiting == 0


def test_both_ends_relay_and_answers_find_their_batch_in_any_order(ends: tuple[End, End]) -> None:
    worker, control = ends
    control.answer_at_once = False
    first = worker.channel.call(batch(b"one"))
    second = worker.channel.call(batch(b"two"))
    back = control.channel.call(batch(b"the other way"))
    control.read()
    worker.read()
    assert [m.data for m in worker.served[0]] == [b"the other way"]
    control.answers[1].callback(encode_failures({0: "second refused"}))
    control.answers[0].callback(encode_failures({}))
    control.read()  # the worker's answer to "the other way"
    worker.read()
    assert decode_failures(outcome(first)) == {}
    assert decode_failures(outcome(second)) == {0: "second refused"}
    assert decode_failures(outcome(back)) == {}


def test_a_batch_that_fails_whole_fails_its_waiter_with_the_reason(ends: tuple[End, End]) -> None:
    worker, control = ends
    control.answer_at_once = False
    garbled = worker.channel.call(b"\x00\x01")  # decode_relays refuses it in serve
    failing = worker.channel.call(batch(b"x"))
    control.read()
    control.answers[0].errback(ConnectionError("stream worker stream/1 is gone"))
    worker.read()
    error = outcome(garbled)
    assert isinstance(error, WorkerError)
    assert "message 0 is cut short" in error.reason
    error = outcome(failing)
    assert isinstance(error, WorkerError)
    assert error.reason == "stream worker stream/1 is gone"


def test_a_closed_channel_fails_what_waits_and_refuses_more(ends: tuple[End, End]) -> None:
    worker, control = ends
    waiter = worker.channel.call(batch(b"lost"))
    control.close()
    worker.read()  # end of file
    error = outcome(waiter)
    assert isinstance(error, WorkerError)
    assert error.reason.startswith("relay channel to the control process closed")
    assert worker.lost == 1
    later = outcome(worker.channel.call(batch(b"later")))
    assert isinstance(later, WorkerError)
    assert "relay channel to the control process is closed" in later.reason


def test_output_to_a_process_that_does_not_read_is_bounded(ends: tuple[End, End]) -> None:
    worker, control = ends
    limit = 256 * 1024
    worker.channel._max_unsent = limit
    data = b"x" * 4096
    refused: WorkerError | None = None
    with capturedLogs() as events:
        for _ in range(10_000):  # the socket pair takes a few hundred KiB; then the limit
            result = outcome(worker.channel.call(batch(data)))
            if isinstance(result, WorkerError):
                refused = result
                break
        assert refused is not None, "batches were queued without a bound"
        again = outcome(worker.channel.call(batch(data)))
        assert isinstance(again, WorkerError)
    assert refused.reason.startswith("relay channel to the control process: ")
    assert f"(limit {limit})" in refused.reason
    transport: Any = worker.transport
    queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert queued <= limit
    # One line for the run of refusals, naming the socket and the reason.
    lines = [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]
    assert lines == [
        f"socket tcp:127.0.0.1:5071: {refused.reason} "
        "(later batches are dropped too until it reads)"
    ]
    for _ in range(1000):  # the other process reads at last, and the queue drains
        control.read()
        transport.doWrite()
        if unsent_bytes(transport) == 0:
            break
    assert unsent_bytes(transport) == 0
    with capturedLogs() as events:
        accepted = worker.channel.call(batch(data))
    assert outcome(accepted) is None  # sent, waiting for its answer
    assert [formatEvent(event) for event in events] == [
        "relay channel to the control process: sending again, after 2 batch(es) dropped"
    ]


@pytest.mark.parametrize(
    ("frame", "what"),
    [
        (FRAME_HEAD.pack(3, b"Z", 0) + b"abc", "unknown kind b'Z'"),
        (FRAME_HEAD.pack(64 * 1024 * 1024, b"B", 0), "a frame of 67108864 bytes"),
    ],
)
def test_a_frame_it_cannot_read_closes_the_channel_and_fails_what_waits(
    ends: tuple[End, End], frame: bytes, what: str
) -> None:
    worker, _control = ends
    waiter = worker.channel.call(batch(b"waits"))
    worker.channel.dataReceived(frame)
    worker.close()
    error = outcome(waiter)
    assert isinstance(error, WorkerError)
    assert what in error.reason
    assert worker.lost == 1


def test_a_frame_split_across_reads_is_read_whole(ends: tuple[End, End]) -> None:
    _worker, control = ends
    payload = batch(b"split")
    frame = FRAME_HEAD.pack(len(payload), b"B", 7) + payload
    for byte in range(len(frame)):
        control.channel.dataReceived(frame[byte : byte + 1])
    assert [[m.data for m in b] for b in control.served] == [[b"split"]]
