"""`RelayChannel`: relayed messages between the control process and one worker, without AMP.

Under a stateless proxy's UDP → TCP load every forwarded message crosses
processes as a relay batch: UDP worker → control process
(``SendManyThroughSockets``) → stream worker holding the connection
(``SendDatagrams``), and each batch is answered. Over AMP each of those
boxes was built key by key, parsed key by key, dispatched as a command
through a `Deferred` chain and answered with another box: the control
process spent most of its samples in AMP. A worker has, beside its AMP
connection, a second UNIX socketpair that carries only relays
(`sipsock.workers.supervisor` passes it as ``--relay-fd``), framed as:

* a head (`FRAME_HEAD`): the payload's length, one kind byte and a
  sequence number, then the payload;
* ``B`` (batch): `encode_relays` bytes, as ``SendManyThroughSockets`` /
  ``SendDatagrams`` carried them; the other side sends every message
  (`sipsock.workers.relaybatch.send_relays`) and answers with the same
  sequence number;
* ``A`` (answer): `encode_failures` bytes, the index and reason of each
  message that could not be sent;
* ``E`` (error): the batch as a whole failed (garbled, say): the reason, in
  UTF-8;
* ``H`` (hint, sequence 0, no answer): something the sender wants the other
  side to know for its next batches (`sipsock.workers.direct`: "this peer's
  connection is held by another worker").

Batches are made once per reactor turn by `RelayBatcher` as before. The
channel keeps what AMP gave: a batch is answered once every message of it
was sent or failed, each message's failure with its reason, and a closed
channel (the other process died) fails every batch waiting for its answer.
It is bounded: when the other process does not read (stuck, or slow) and
`MAX_UNSENT` bytes wait in this process, or reads and does not answer and
`MAX_WAITING` batches wait for their answer, a new batch is refused with a
reason naming the channel (its messages fail, and the caller counts and
reports them as drops) instead of growing memory without bound; the first
refusal of a run is logged with the sockets of the dropped batch, and the
first batch accepted again says how many were dropped meanwhile. A frame
longer than `MAX_FRAME`, or of an unknown kind, closes the channel with a
logged reason (the other side is not a sipsock process of this version).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.transport.logcontext import skip_log_context
from sipsock.workers.commands import WorkerError, decode_relays
from sipsock.workers.directwrite import write_at_once

#: Payload length, kind, sequence number.
FRAME_HEAD: Final = struct.Struct("!IcI")
BATCH: Final = b"B"
ANSWER: Final = b"A"
ERROR: Final = b"E"
HINT: Final = b"H"
#: Longest payload accepted (a batch is about 512 KiB at most: `relaybatch.MAX_BYTES`).
MAX_FRAME: Final = 16 * 1024 * 1024
#: Bytes this process may hold for the other one before it refuses new batches.
MAX_UNSENT: Final = 8 * 1024 * 1024
#: Batches sent and not answered yet, at most (each holds at most 256 messages).
MAX_WAITING: Final = 1024

#: What the channel does with a batch it receives: fires with the `encode_failures` answer.
Serve = Callable[[bytes], "Deferred[bytes]"]


class RelayChannel(Protocol):
    """One end of a worker's relay socketpair (see the module).

    ``serve`` sends the messages of a batch received; ``label`` names the
    channel in reasons and log lines (``relay channel to stream worker
    stream/1``, say).
    """

    log = Logger()

    def __init__(
        self,
        serve: Serve,
        label: str,
        *,
        max_unsent: int = MAX_UNSENT,
        max_frame: int = MAX_FRAME,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._serve = serve
        self.label = label
        self._max_unsent = max_unsent
        self._max_waiting = max_waiting
        self._max_frame = max_frame
        self._buffer = b""
        self._waiting: dict[int, Deferred[bytes]] = {}
        self._next = 0
        self._lost: str | None = None
        #: Called once when the channel closes (the worker's end exits with it).
        self.on_lost: Callable[[], None] | None = None
        #: Called with the payload of each hint received (none: hints are ignored).
        self.on_hint: Callable[[bytes], None] | None = None
        #: Batches sent and received (for measurements and tests).
        self.sent = 0
        self.received = 0
        #: Batches refused since the last one accepted (over a bound).
        self.refused = 0

    def connectionMade(self) -> None:
        write_at_once(self.transport)
        skip_log_context(self.transport)

    @property
    def open(self) -> bool:
        """Connected and not closed: batches can be sent."""
        return self._lost is None and self.transport is not None

    @property
    def waiting(self) -> int:
        """Batches sent and not answered yet."""
        return len(self._waiting)

    def call(self, payload: bytes) -> Deferred[bytes]:
        """Send one batch; fires with the other side's `encode_failures` answer.

        Fails with `WorkerError` when the channel is closed, holds
        `MAX_UNSENT` bytes the other process has not taken, or waits for the
        answers of `MAX_WAITING` batches.
        """
        transport: Any = self.transport
        if self._lost is not None or transport is None:
            reason = self._lost or "not connected"
            return _failed(f"{self.label} is closed ({reason})")
        unsent = unsent_bytes(transport)
        if unsent + len(payload) > self._max_unsent:
            return self._refuse_batch(
                payload,
                f"{unsent} bytes not yet taken by the other process (limit {self._max_unsent})",
            )
        if len(self._waiting) >= self._max_waiting:
            return self._refuse_batch(
                payload,
                f"{len(self._waiting)} batches wait for the other process's answer "
                f"(limit {self._max_waiting})",
            )
        if self.refused:
            self.log.info(
                "{channel}: sending again, after {count} batch(es) dropped",
                channel=self.label,
                count=self.refused,
            )
            self.refused = 0
        sequence = self._next
        self._next = (sequence + 1) & 0xFFFFFFFF
        waiter: Deferred[bytes] = Deferred()
        self._waiting[sequence] = waiter
        self.sent += 1
        transport.write(FRAME_HEAD.pack(len(payload), BATCH, sequence) + payload)
        return waiter

    def _refuse_batch(self, payload: bytes, why: str) -> Deferred[bytes]:
        """Drop a batch over a bound: its messages fail with the reason (the first logged)."""
        reason = f"{self.label}: {why}: batch of {len(payload)} bytes dropped"
        if not self.refused:
            try:
                names = sorted({message.socket for message in decode_relays(payload)})
            except WorkerError:
                names = []
            self.log.warn(
                "socket {socket}: {reason} (later batches are dropped too until it reads)",
                socket=", ".join(names[:3]) + (", ..." if len(names) > 3 else ""),
                reason=reason,
            )
        self.refused += 1
        return _failed(reason)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset, end, head = 0, len(buffer), FRAME_HEAD.size
        unpack = FRAME_HEAD.unpack_from
        while end - offset >= head and self._lost is None:
            size, kind, sequence = unpack(buffer, offset)
            if size > self._max_frame:
                self._refuse(f"a frame of {size} bytes (limit {self._max_frame})")
                return
            stop = offset + head + size
            if stop > end:
                break
            payload = buffer[offset + head : stop]
            offset = stop
            if kind == BATCH:
                self._batch(sequence, payload)
            elif kind in (ANSWER, ERROR):
                self._answer(kind, sequence, payload)
            elif kind == HINT:
                if self.on_hint is not None:
                    self.on_hint(payload)
            else:
                self._refuse(f"a frame of unknown kind {kind!r}")
                return
        self._buffer = buffer[offset:] if offset < end else b""

    def _batch(self, sequence: int, payload: bytes) -> None:
        self.received += 1
        try:
            answering = self._serve(payload)
        except Exception as error:
            reason = error.reason if isinstance(error, WorkerError) else str(error)
            self._write(ERROR, sequence, (reason or type(error).__name__).encode("utf-8"))
            return
        answering.addCallbacks(
            self._answered, self._batch_failed, callbackArgs=(sequence,), errbackArgs=(sequence,)
        )

    def hint(self, payload: bytes) -> None:
        """Send a hint (no answer comes; dropped when the channel is closed)."""
        self._write(HINT, 0, payload)

    def _answered(self, failed: bytes, sequence: int) -> None:
        self._write(ANSWER, sequence, failed)

    def _batch_failed(self, failure: Failure, sequence: int) -> None:
        reason = failure.getErrorMessage() or type(failure.value).__name__
        self._write(ERROR, sequence, reason.encode("utf-8"))

    def _write(self, kind: bytes, sequence: int, payload: bytes) -> None:
        transport: Any = self.transport
        if self._lost is None and transport is not None:
            transport.write(FRAME_HEAD.pack(len(payload), kind, sequence) + payload)

    def _answer(self, kind: bytes, sequence: int, payload: bytes) -> None:
        waiter = self._waiting.pop(sequence, None)
        if waiter is None:
            self.log.warn(
                "{channel}: an answer to batch {sequence}, which waits for none: ignored",
                channel=self.label,
                sequence=sequence,
            )
            return
        if kind == ANSWER:
            waiter.callback(payload)
        else:
            waiter.errback(WorkerError(payload.decode("utf-8", "replace")))

    def _refuse(self, what: str) -> None:
        self.log.error(
            "{channel}: the other side sent {what}: closing the channel",
            channel=self.label,
            what=what,
        )
        self._lost = f"the other side sent {what}"
        transport: Any = self.transport
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._lost is None:
            self._lost = "the other process closed it"
        self._buffer = b""
        waiting, self._waiting = self._waiting, {}
        if waiting:
            error = WorkerError(f"{self.label} closed ({self._lost}): batch not answered")
            for waiter in waiting.values():
                waiter.errback(error)
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()


def unsent_bytes(transport: Any) -> int:
    """Bytes written to ``transport`` that the kernel has not taken yet."""
    unsent: int = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return unsent


def _failed(reason: str) -> Deferred[bytes]:
    failing: Deferred[bytes] = Deferred()
    failing.errback(WorkerError(reason))
    return failing
