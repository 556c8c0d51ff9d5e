"""One stream connection of a socket, whatever its framing: timers, limits, delivery.

`StreamConnection` is the part TCP, TLS, WS and WSS share: its id and peer,
the idle timeout, the header timeout (`sipsock.limits.HeaderWatch`), the
pending-output cap (`sipsock.transport.backpressure`), delivery of whole
messages to the socket's sink (offered to its ``answer_datagram`` first, as a
UDP listener does) with an `Origin` naming the connection, replies,
framing errors and failed handshakes (counted and logged through the socket's
`LimitReporter`). The protocol that cuts messages out of the bytes
(`sipsock.transport.stream_protocol`, `sipsock.transport.ws`) drives it; its
socket (`sipsock.transport.stream.StreamListener`) registers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, ITransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from sipsock.limits import HeaderWatch, is_size_error
from sipsock.seams import Origin
from sipsock.sip import SipFramingError
from sipsock.transport.backpressure import OutputGauge, descriptor_output, overflowing
from sipsock.transport.socketwrite import send_now
from sipsock.transport.tlserrors import describe_tls_failure

if TYPE_CHECKING:
    from sipsock.transport.stream import StreamListener

_connection_ids: Iterator[int] = itertools.count(1)


class StreamConnection:
    """One stream connection of a socket, whatever the framing.

    Delivers whole messages to the listener's sink with an `Origin` naming the
    connection, writes replies, closes itself after ``idle_timeout`` seconds
    without traffic in either direction, and keeps the socket's counters.
    ``inbound`` connections (accepted ones) must send a whole first message
    within the header timeout; every connection must finish a header section
    within it once started (`fed`), and read its output (`write` aborts it
    past ``max_pending_send`` bytes queued once the kernel refused some of
    them, and past twice that in any case).
    """

    log = Logger()

    def __init__(
        self,
        listener: StreamListener,
        transport: ITransport,
        peer: tuple[str, int],
        *,
        inbound: bool = False,
    ) -> None:
        self.listener = listener
        self.transport = transport
        self.peer = peer
        self.inbound = inbound
        self.id = next(_connection_ids)
        self.open = True
        self.ready = False
        self.handshake_error: str | None = None
        #: The transport when it is a plain TCP descriptor (no TLS or WebSocket
        #: layer above it): its output is read directly after each write.
        self._descriptor = transport if isinstance(transport, FileDescriptor) else None
        #: The output its layers (TLS, WebSocket) hold, when it is not a plain descriptor.
        self._gauge = OutputGauge(transport)
        #: Output written while a read is delivered (`hold_output`), sent in
        #: one piece at its end (`release_output`), and its size.
        self._held: list[bytes] | None = None
        self._held_size = 0
        # Traffic only stamps the time (`touch`); the idle timer, armed for
        # the earliest moment the connection can be idle, checks the stamp
        # when it fires and re-arms itself for the time left (no reschedule
        # per message).
        self._seconds: Callable[[], float] = listener.reactor.seconds
        self._last_traffic = self._seconds()
        self._idle: IDelayedCall | None = listener.reactor.callLater(
            listener.idle_timeout, self._idle_timeout
        )
        #: The `Origin` of the messages of this connection, rebuilt when the
        #: listener's definition or slot changes (`_origin`).
        self._cached_origin: Origin | None = None
        self.watch = HeaderWatch(first_message=inbound)
        self._header: IDelayedCall | None = None
        self._arm_header_timer()

    def _describe(self) -> dict[str, Any]:
        return {
            "socket": self.listener.sdef.socket_text,
            "slot": self.listener.slot,
            "peer": self.peer,
            "connection": self.id,
        }

    def touch(self) -> None:
        """Traffic seen: the idle timeout counts from now."""
        self._last_traffic = self._seconds()

    def fed(self, data: bytes, messages: list[bytes], pending: int) -> None:
        """A read went through the framer: start or stop the header timer."""
        self.watch.fed(data, messages, pending)
        self._arm_header_timer()

    def message_completed(self) -> None:
        """A whole message arrived (WebSocket): the first-message deadline is met."""
        self.watch.message_received()
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        waiting = self.watch.waiting
        timer = self._header
        if waiting and timer is None:
            self._header = self.listener.reactor.callLater(
                self.listener.limits.header_timeout, self._header_timed_out
            )
        elif not waiting and timer is not None:
            if timer.active():
                timer.cancel()
            self._header = None

    def _header_timed_out(self) -> None:
        self._header = None
        if not self.open:
            return
        timeout = self.listener.limits.header_timeout
        what = (
            "no whole first message" if self.watch.awaiting_first else "header section not finished"
        )
        self.cut("header_timeout", f"{what} within {timeout:g} s (connection {self.id})")

    def cut(self, limit: str, reason: str) -> None:
        """A limit was hit: count and log it (rate-limited), abort the connection."""
        self.listener.limit_reporter.hit(limit, reason, self.peer)
        self.open = False
        self._held = None
        abort: Callable[[], None] | None = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _idle_timeout(self) -> None:
        timeout = self.listener.idle_timeout
        left = self._last_traffic + timeout - self._seconds()
        if left > 0:
            self._idle = self.listener.reactor.callLater(left, self._idle_timeout)
            return
        self._idle = None
        self.listener.limit_reporter.problem(
            "idle connections closed",
            "socket {socket} (slot {slot}): connection {connection} from {peer} "
            "closed: idle for {timeout} s",
            level=LogLevel.info,
            timeout=self.listener.idle_timeout,
            **self._describe(),
        )
        self._lose()

    def _origin(self) -> Origin:
        listener = self.listener
        origin = self._cached_origin
        if origin is None or origin.sdef is not listener.sdef or origin.slot != listener.slot:
            origin = self._cached_origin = Origin(
                sdef=listener.sdef,
                slot=listener.slot,
                peer=self.peer,
                reply=self.reply,
                connection_id=self.id,
                listener=listener,
            )
        return origin

    def deliver(self, data: bytes) -> None:
        """One whole message arrived on this connection.

        It is first offered to the sink's ``answer_datagram`` (as a UDP
        listener offers each datagram: a keep-alive OPTIONS answered from its
        bytes); declined, it goes to the sink's ``message_received``.
        """
        listener = self.listener
        listener.counters.count_in(data)
        sink = listener.sink
        try:
            answer = sink.answer_datagram(data, self.peer, listener.sdef)
        except Exception:
            answer = None
            listener.limit_reporter.answer_failed(**self._describe())
        if answer is not None:
            self.reply(answer)
            return
        try:
            sink.message_received(data, self._origin())
        except Exception:
            listener.counters.drops += 1
            listener.limit_reporter.problem(
                "messages the sink raised on",
                "socket {socket} (slot {slot}): message from {peer} dropped: "
                "the message sink raised",
                level=LogLevel.critical,
                traceback=True,
                **self._describe(),
            )

    def write(self, data: bytes) -> None:
        """Queue bytes on the connection (raises ConnectionError once it is closed)."""
        if not self.open:
            self.listener.counters.drops += 1
            raise ConnectionError(f"connection {self.id} to {self.peer} is closed")
        held = self._held
        if held is not None:
            held.append(data)
            self._held_size += len(data)
        else:
            self._send(data)
        self._last_traffic = self._seconds()
        self.check_pending_output()

    def hold_output(self) -> None:
        """Hold what is written until `release_output` (the messages of one read).

        A plain TCP connection only: the answers to the messages of one read
        leave in one piece, straight to the socket when nothing is queued
        before them.
        """
        if self._descriptor is not None:
            self._held = []
            self._held_size = 0

    def release_output(self) -> None:
        """Send what `hold_output` held, in one piece."""
        held = self._held
        if held is None:
            return
        self._held = None
        self._held_size = 0
        if held:
            self._send(held[0] if len(held) == 1 else b"".join(held))

    def _send(self, data: bytes) -> None:
        """Write ``data``: on a plain TCP connection, to the socket at once (`send_now`)."""
        descriptor = self._descriptor
        if descriptor is not None:
            send_now(descriptor, data)
        else:
            self.transport.write(data)

    def check_pending_output(self) -> None:
        """Cut the connection if its peer does not read what was written to it.

        Called after every write, including the ones the transport makes by
        itself (WebSocket pongs).
        """
        limit = self.listener.limits.max_pending_send
        descriptor = self._descriptor
        if descriptor is not None:
            queued, refused = descriptor_output(descriptor)
            queued += self._held_size
        else:
            queued, refused = self._gauge.read()
        if overflowing(queued, refused, limit):
            self.cut(
                "send_buffer",
                f"{queued} bytes queued to a peer that does not read "
                f"(max_pending_send {limit}, connection {self.id})",
            )

    def send_message(self, data: bytes) -> None:
        """Write one SIP message and count it."""
        self.write(data)
        self.listener.counters.count_out(data)

    def reply(self, data: bytes) -> None:
        """Answer on this connection; a closed connection drops (and logs) the reply."""
        try:
            self.send_message(data)
        except ConnectionError as exc:
            self.listener.limit_reporter.problem(
                "replies dropped",
                "socket {socket} (slot {slot}): reply to {peer} dropped: {reason}",
                reason=str(exc),
                **self._describe(),
            )

    def framing_error(self, reason: str, error: SipFramingError | None = None) -> None:
        """The byte stream cannot be read any more: count, log and close.

        A message or header section above the size limit is a limit hit
        (counted as ``limit_oversize``, logged rate-limited). When the
        framer read the header section of the failing message (``error``
        with a status and a header: a Content-Length missing, broken or too
        large), the sink may answer it first (400 or 513), through its
        ``message_unframeable``; the answer is flushed before the close.
        """
        if error is not None and error.status is not None and error.header is not None:
            self._answer_unframeable(error.header, error)
        if error is not None and is_size_error(error):
            self.listener.limit_reporter.hit(
                "oversize", f"{reason} (connection {self.id})", self.peer
            )
            self.open = False
            self._lose()
            return
        self.listener.counters.parse_errors += 1
        self.listener.limit_reporter.problem(
            "connections closed on a framing error",
            "socket {socket} (slot {slot}): connection {connection} from {peer} closed: {reason}",
            reason=reason,
            **self._describe(),
        )
        self.open = False
        self._lose()

    def _answer_unframeable(self, header: bytes, error: SipFramingError) -> None:
        try:
            self.listener.sink.message_unframeable(header, error, self._origin())
        except Exception:
            self.listener.limit_reporter.problem(
                "unframeable messages the sink failed to answer",
                "socket {socket} (slot {slot}): the message sink failed to answer an "
                "unframeable message from {peer}",
                level=LogLevel.critical,
                traceback=True,
                **self._describe(),
            )

    def close(self) -> None:
        """Flush and close (socket removed); the listener aborts it if flushing stalls."""
        self.open = False
        self._lose()

    def _lose(self) -> None:
        """Close once the output (held output first) is flushed."""
        self.release_output()
        self.transport.loseConnection()

    def handshake_failed(self, reason: str) -> None:
        """A TLS or WebSocket opening handshake failed: count and log once (it then closes)."""
        if self.handshake_error is not None:
            return
        self.handshake_error = reason
        self.listener.counters.handshake_failures += 1
        self.listener.limit_reporter.problem(
            "failed handshakes",
            "socket {socket} (slot {slot}): connection {connection} from {peer} closed: "
            "handshake failed: {reason}",
            level=LogLevel.info,
            reason=reason,
            **self._describe(),
        )

    def lost(self, reason: Failure | None = None) -> None:
        """The transport is gone: stop the timer and leave the listener.

        A TLS error before the connection was ready is counted as a failed
        handshake; after that it is logged.
        """
        tls_error = describe_tls_failure(reason.value if reason is not None else None)
        if self.open and not self.ready and not self.listener.closing:
            if tls_error is not None:
                self.handshake_failed(f"TLS: {tls_error}")
            else:
                self.handshake_failed("closed before the handshake completed")
        elif self.open and tls_error is not None:
            self.listener.limit_reporter.problem(
                "connections closed on a TLS error",
                "socket {socket} (slot {slot}): connection {connection} from {peer} "
                "closed: TLS error: {reason}",
                level=LogLevel.info,
                reason=tls_error,
                **self._describe(),
            )
        self.open = False
        self._held = None
        for timer in (self._idle, self._header):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle = self._header = None
        self.listener.connection_lost(self)
