# mypy: disable-error-code="no-untyped-call"
"""A worker's sends through the control process: a batch per reactor turn, answered per message."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.workers.commands import (
    Relayed,
    WorkerError,
    decode_failures,
    decode_relays,
    encode_failures,
    encode_relays,
)
from sipsock.workers.relaybatch import BatchesByProcess, RelayBatcher, send_by_key, send_relays

TCP = "tcp:127.0.0.1:5071"
PEER = ("127.0.0.1", 5080)


class Control:
    """The control process's side: records each batch, answers when told."""

    def __init__(self) -> None:
        self.batches: list[list[Relayed]] = []
        self.answers: list[Deferred[bytes]] = []

    def send_batch(self, messages: bytes) -> Deferred[bytes]:
        self.batches.append(decode_relays(messages))
        answer: Deferred[bytes] = Deferred()
        self.answers.append(answer)
        return answer


def outcomes(waiters: list[Deferred[None]]) -> list[Any]:
    results: list[Any] = []
    for waiter in waiters:
        waiter.addCallbacks(results.append, lambda f: results.append(f.value))
    return results


relayed = st.builds(
    Relayed,
    st.text(max_size=40),
    st.text(max_size=60),
    st.integers(0, 65535),
    st.binary(max_size=300),
)


@given(st.lists(relayed, max_size=20))
def test_relays_survive_the_wire(messages: list[Relayed]) -> None:
    assert decode_relays(encode_relays(messages)) == messages


@pytest.mark.parametrize("cut", [1, 5, 11, 20])
def test_a_cut_batch_is_refused_with_a_reason(cut: int) -> None:
    data = encode_relays([Relayed(TCP, "127.0.0.1", 5080, b"INVITE sip:x SIP/2.0\r\n\r\n")])
    with pytest.raises(WorkerError, match="message 0 is cut short"):
        decode_relays(data[:-cut])


def test_a_name_that_is_not_utf8_is_refused() -> None:
    data = bytearray(encode_relays([Relayed("tcp:x", "127.0.0.1", 5080, b"")]))
    data[10] = 0xFF  # inside the socket name
    with pytest.raises(WorkerError, match="not UTF-8"):
        decode_relays(bytes(data))


def test_the_messages_of_one_turn_go_in_one_batch() -> None:
    clock, control = Clock(), Control()
    batcher = RelayBatcher(control.send_batch, clock)
    waiters = [batcher.relay(TCP, b"m%d" % i, PEER) for i in range(5)]
    assert control.batches == []  # not before the turn ends
    clock.advance(0)
    assert [[m.data for m in batch] for batch in control.batches] == [
        [b"m0", b"m1", b"m2", b"m3", b"m4"]
    ]
    assert control.batches[0][0] == Relayed(TCP, "127.0.0.1", 5080, b"m0")
    results = outcomes(waiters)
    assert results == []  # each waits for the answer
    control.answers[0].callback(encode_failures({}))
    assert results == [None] * 5
    assert (batcher.batches, batcher.messages) == (1, 5)


def test_each_message_fails_alone_with_its_reason() -> None:
    clock, control = Clock(), Control()
    batcher = RelayBatcher(control.send_batch, clock)
    waiters = [batcher.relay(TCP, b"m%d" % i, PEER) for i in range(3)]
    clock.advance(0)
    results = outcomes(waiters)
    control.answers[0].callback(encode_failures({1: "Connection refused"}))
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], WorkerError)
    assert results[1].reason == "Connection refused"


def test_a_lost_batch_fails_every_message_of_it() -> None:
    clock, control = Clock(), Control()
    batcher = RelayBatcher(control.send_batch, clock)
    waiters = [batcher.relay(TCP, b"m", PEER) for _ in range(2)]
    clock.advance(0)
    results = outcomes(waiters)
    control.answers[0].errback(Failure(ConnectionError("control process gone")))
    assert [str(r) for r in results] == ["control process gone"] * 2


def test_a_garbled_answer_fails_every_message_of_the_batch() -> None:
    clock, control = Clock(), Control()
    batcher = RelayBatcher(control.send_batch, clock)
    waiters = [batcher.relay(TCP, b"m", PEER)]
    clock.advance(0)
    results = outcomes(waiters)
    control.answers[0].callback(b"{not json")
    assert isinstance(results[0], WorkerError)


def test_a_full_batch_goes_at_once_and_the_rest_with_the_turn() -> None:
    clock, control = Clock(), Control()
    batcher = RelayBatcher(control.send_batch, clock, max_messages=2, max_bytes=1000)
    for i in range(3):
        batcher.relay(TCP, b"m%d" % i, PEER)
    assert [len(b) for b in control.batches] == [2]
    clock.advance(0)
    assert [len(b) for b in control.batches] == [2, 1]
    batcher.relay(TCP, b"x" * 1000, PEER)  # over the byte bound alone
    assert [len(b) for b in control.batches] == [2, 1, 1]
    clock.advance(0)
    assert [len(b) for b in control.batches] == [2, 1, 1]
    assert batcher.queued == 0


def test_a_send_that_raises_fails_the_batch() -> None:
    clock = Clock()

    def broken(messages: bytes) -> Deferred[bytes]:
        raise ConnectionError("not connected")

    batcher = RelayBatcher(broken, clock)
    results = outcomes([batcher.relay(TCP, b"m", PEER)])
    clock.advance(0)
    assert [str(r) for r in results] == ["not connected"]


def test_the_control_side_sends_each_message_in_order_and_answers_once_all_are_done() -> None:
    sent: list[tuple[str, bytes, tuple[str, int]]] = []
    slow: Deferred[None] = Deferred()

    def send(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        sent.append((name, data, peer))
        if data == b"refused":
            return defer.fail(WorkerError("cannot send to 127.0.0.1:5080 through tcp: refused"))
        if data == b"slow":
            return slow
        return defer.succeed(None)

    batch = encode_relays(
        [
            Relayed(TCP, "127.0.0.1", 5080, b"ok"),
            Relayed(TCP, "127.0.0.1", 5080, b"refused"),
            Relayed(TCP, "::1", 5081, b"slow"),
        ]
    )
    answers: list[bytes] = []
    send_relays(send, batch).addCallback(answers.append)
    assert [d for _, d, _ in sent] == [b"ok", b"refused", b"slow"]
    assert sent[2][2] == ("::1", 5081)
    assert answers == []
    slow.callback(None)
    assert decode_failures(answers[0]) == {1: "cannot send to 127.0.0.1:5080 through tcp: refused"}


def test_the_control_side_refuses_a_garbled_batch_before_sending() -> None:
    with pytest.raises(WorkerError):
        send_relays(lambda *_: defer.succeed(None), b"\x00\x05")


def test_a_batch_sent_at_once_is_answered_at_once_with_no_failures() -> None:
    batch = encode_relays([Relayed(TCP, "127.0.0.1", 5080, b"m%d" % i) for i in range(3)])
    answers: list[bytes] = []
    send_relays(lambda *_: defer.succeed(None), batch).addCallback(answers.append)
    assert answers == [b"[]"]
    assert decode_failures(answers[0]) == {}


class Workers:
    """The workers' side of `BatchesByProcess`: records each batch by process."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Relayed]]] = []
        self.answers: list[Deferred[bytes]] = []

    def send_batch(self, process: str, messages: bytes) -> Deferred[bytes]:
        self.batches.append((process, decode_relays(messages)))
        answer: Deferred[bytes] = Deferred()
        self.answers.append(answer)
        return answer


def test_the_control_process_sends_one_batch_per_worker_and_turn_in_order() -> None:
    clock, workers = Clock(), Workers()
    sends: BatchesByProcess[str] = BatchesByProcess(workers.send_batch, clock)
    waiters = [
        sends.send("w1", 3, b"a", PEER),
        sends.send("w2", 4, b"b", ("::1", 5)),
        sends.send("w1", 3, b"c", PEER),
    ]
    results: dict[int, Any] = {}

    def keep(result: Any, index: int) -> None:
        results[index] = result

    for index, waiter in enumerate(waiters):
        waiter.addBoth(keep, index)
    assert workers.batches == []
    clock.advance(0)
    assert sorted(workers.batches) == [
        ("w1", [Relayed("3", *PEER, b"a"), Relayed("3", *PEER, b"c")]),
        ("w2", [Relayed("4", "::1", 5, b"b")]),
    ]
    assert sends.batches == 2
    by_process = dict(zip([p for p, _ in workers.batches], workers.answers, strict=True))
    by_process["w1"].callback(encode_failures({1: "Connection refused"}))
    by_process["w2"].callback(encode_failures({}))
    assert results[0] is None and results[1] is None
    assert isinstance(results[2], Failure)
    assert isinstance(results[2].value, WorkerError)
    assert results[2].value.reason == "Connection refused"


def test_a_forgotten_worker_sends_what_it_queued_and_starts_afresh() -> None:
    clock, workers = Clock(), Workers()
    sends: BatchesByProcess[str] = BatchesByProcess(workers.send_batch, clock)
    sends.send("w1", 3, b"a", PEER)
    sends.forget("w1")
    assert workers.batches == [("w1", [Relayed("3", *PEER, b"a")])]
    assert sends.batches == 0
    sends.forget("w1")  # twice, or never used: nothing
    sends.send("w1", 3, b"b", PEER)
    clock.advance(0)
    assert workers.batches[-1] == ("w1", [Relayed("3", *PEER, b"b")])


def test_a_worker_answers_a_keyed_batch_per_message_and_names_a_bad_key() -> None:
    sent: list[tuple[int, bytes, tuple[str, int]]] = []

    def send(key: int, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        if key == 9:
            return defer.fail(WorkerError(f"socket key {key}: key {key} is not held"))
        sent.append((key, data, peer))
        return defer.succeed(None)

    batch = encode_relays(
        [
            Relayed("3", *PEER, b"a"),
            Relayed("x3", *PEER, b"b"),
            Relayed("9", *PEER, b"c"),
            Relayed("٣", *PEER, b"d"),
        ]
    )
    answer: list[bytes] = []
    send_relays(send_by_key(send), batch).addCallback(answer.append)
    assert sent == [(3, b"a", PEER)]
    assert decode_failures(answer[0]) == {
        1: "SendDatagrams: socket key 'x3' is not a number",
        2: "socket key 9: key 9 is not held",
        3: "SendDatagrams: socket key '٣' is not a number",
    }
