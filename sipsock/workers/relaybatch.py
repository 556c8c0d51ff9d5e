"""`RelayBatcher`: a worker's sends through the control process, a reactor turn's worth at a time.

A worker's application that sends through a socket the worker does not hold
(a stream socket, or a UDP socket of another pool) asks the control process.
One AMP round trip per message cost the worker about a third of its time and
the control process most of its own under a stateless proxy's load (a box
built, written, read and parsed, then an answer the same way, for every
message). The batcher queues the messages of one reactor turn (every
datagram one read of the socket gave) and sends them in one
`SendManyThroughSockets`; each message's Deferred fires when the control
process answers the batch: with None, or with `WorkerError` naming why that
message could not be sent. A batch holds at most `MAX_MESSAGES` messages and
about `MAX_BYTES` bytes; a fuller queue goes at once.

The batch is handed to ``send_batch`` (a `sipsock.workers.relaychannel`
frame: to the control process, or straight to a worker of the other pool,
`sipsock.workers.direct`), so the same batcher serves whichever process ends
up holding the sockets; that process answers with `send_relays`.

The control process batches the other way too (`BatchesByProcess`): its
sends through a socket a worker holds (a stream socket's connection, a UDP
socket without a control copy) go to that worker in one `SendDatagrams` per
reactor turn, not one `SendDatagram` each. Under a stateless proxy's UDP →
TCP load the one-by-one hop cost the control process three quarters of its
time in AMP, and the stream worker half of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from sipsock.workers.commands import (
    Relayed,
    WorkerError,
    decode_failures,
    decode_relays,
    encode_failures,
    encode_relays,
)

#: Messages in one batch at most.
MAX_MESSAGES: Final = 256
#: Bytes of message data in one batch, about (the message that crosses it goes too).
MAX_BYTES: Final = 512 * 1024

#: Sends one `encode_relays` batch; fires with the `encode_failures` answer.
SendBatch = Callable[[bytes], "Deferred[bytes]"]
#: Sends one message through the daemon's socket (name, data, peer), as
#: `SendThroughSocket` does; fails with the reason.
SendOne = Callable[[str, bytes, tuple[str, int]], "Deferred[Any]"]


def send_relays(send: SendOne, messages: bytes) -> Deferred[bytes]:
    """Send every message of an `encode_relays` batch with ``send``, in order.

    Fires once every send is done with the `encode_failures` answer: the
    index of each message that failed, with the reason. A garbled batch
    raises `WorkerError` (nothing of it is sent).
    """
    failed: dict[int, str] = {}
    pending: list[Deferred[Any]] = []
    for index, message in enumerate(decode_relays(messages)):
        sending = send(message.socket, message.data, (message.host, message.port))
        if sending.called and not isinstance(sending.result, (Failure, Deferred)):
            continue  # sent at once (UDP, an open connection): nothing to wait for
        pending.append(sending.addErrback(_note_failure, failed, index))
    if not pending:
        return defer.succeed(encode_failures(failed))
    return defer.gatherResults(pending).addCallback(
        lambda _: encode_failures(dict(sorted(failed.items())))
    )


def _note_failure(failure: Failure, failed: dict[int, str], index: int) -> None:
    failed[index] = failure.getErrorMessage() or type(failure.value).__name__


class RelayBatcher:
    """Queues relayed messages and sends them once per reactor turn (see the module)."""

    def __init__(
        self,
        send_batch: SendBatch,
        reactor: Any,
        *,
        max_messages: int = MAX_MESSAGES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a batch holds at least one message and one byte")
        self._send_batch = send_batch
        self._reactor = reactor
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._queue: list[Relayed] = []
        self._waiting: list[Deferred[None]] = []
        self._bytes = 0
        self._flush_call: IDelayedCall | None = None
        #: Batches sent, and messages in them (for measurements and tests).
        self.batches = 0
        self.messages = 0

    def relay(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send ``data`` to ``peer`` through the daemon's socket ``name``, with the turn's batch."""
        waiter: Deferred[None] = Deferred()
        self._queue.append(Relayed(name, peer[0], peer[1], data))
        self._waiting.append(waiter)
        self._bytes += len(data)
        if len(self._queue) >= self._max_messages or self._bytes >= self._max_bytes:
            self.flush()
        elif self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self.flush)
        return waiter

    @property
    def queued(self) -> int:
        """Messages waiting for the next batch."""
        return len(self._queue)

    def flush(self) -> None:
        """Send what is queued now (nothing when the queue is empty)."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        if not self._queue:
            return
        queue, waiting = self._queue, self._waiting
        self._queue, self._waiting, self._bytes = [], [], 0
        self.batches += 1
        self.messages += len(queue)
        try:
            sending = self._send_batch(encode_relays(queue))
        except Exception:
            failure = Failure()  # type: ignore[no-untyped-call]
            for waiter in waiting:
                waiter.errback(failure)
            return
        sending.addCallbacks(
            self._answered, self._batch_failed, callbackArgs=(waiting,), errbackArgs=(waiting,)
        )

    def _answered(self, answer: bytes, waiting: list[Deferred[None]]) -> None:
        try:
            failed = decode_failures(answer)
        except WorkerError as error:
            failure = Failure(error)  # type: ignore[no-untyped-call]
            for waiter in waiting:
                waiter.errback(failure)
            return
        for index, waiter in enumerate(waiting):
            reason = failed.get(index)
            if reason is None:
                waiter.callback(None)
            else:
                waiter.errback(WorkerError(reason))

    def _batch_failed(self, failure: Failure, waiting: list[Deferred[None]]) -> None:
        """The whole batch failed (the control process is gone): so did every message."""
        for waiter in waiting:
            waiter.errback(failure)


P = TypeVar("P", bound=Hashable)


class BatchesByProcess(Generic[P]):
    """One `RelayBatcher` per worker process: sends to a worker, a turn's worth at a time.

    ``send_batch(process, messages)`` sends one `encode_relays` batch to that
    process (its socket field is the worker's socket key in decimal) and
    fires with the `encode_failures` answer. Messages to one process keep
    their order. `forget` drops an ended process's batcher (what is queued
    goes first, and fails as any send to a gone worker does).
    """

    def __init__(
        self,
        send_batch: Callable[[P, bytes], Deferred[bytes]],
        reactor: Any,
        *,
        max_messages: int = MAX_MESSAGES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._send_batch = send_batch
        self._reactor = reactor
        self._limits = (max_messages, max_bytes)
        self._batchers: dict[P, RelayBatcher] = {}

    def send(self, process: P, key: int, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send ``data`` to ``peer`` from ``process``'s socket ``key``, with the turn's batch."""
        batcher = self._batchers.get(process)
        if batcher is None:
            send_batch = self._send_batch

            def send_one_batch(messages: bytes) -> Deferred[bytes]:
                return send_batch(process, messages)

            max_messages, max_bytes = self._limits
            batcher = RelayBatcher(
                send_one_batch, self._reactor, max_messages=max_messages, max_bytes=max_bytes
            )
            self._batchers[process] = batcher
        return batcher.relay(str(key), data, peer)

    @property
    def batches(self) -> int:
        """Batches sent to the live processes (for measurements and tests)."""
        return sum(batcher.batches for batcher in self._batchers.values())

    def forget(self, process: P) -> None:
        """``process`` ended: what it has queued goes now, and its batcher is dropped."""
        batcher = self._batchers.pop(process, None)
        if batcher is not None:
            batcher.flush()


def send_by_key(
    send: Callable[[int, bytes, tuple[str, int]], Deferred[None]],
) -> SendOne:
    """A `SendOne` for `send_relays` of a `SendDatagrams` batch: the socket field is a key."""

    def send_one(key: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        if not (key.isascii() and key.isdigit()):
            reason = f"SendDatagrams: socket key {key[:40]!r} is not a number"
            return defer.fail(WorkerError(reason))
        return send(int(key), data, peer)

    return send_one
