"""SIP over stream transports: TCP and TLS here, WS and WSS on the same model.

One `StreamListener` is one listening socket and every connection accepted on
it or opened from it. Each connection has a `StreamConnection` (the part every
stream transport shares: id, peer, idle timeout, counters, delivery to the
sink, closing on socket removal) driven by a Twisted protocol that knows how
messages are cut out of the bytes: `SipStreamProtocol` uses
`sipsock.sip.StreamFramer` (TCP and TLS); the WebSocket protocol of
`sipsock.transport.ws` hands one WebSocket message per SIP message to the
same `StreamConnection.deliver`.

TLS is a layer under the protocol: a listener given a `TLSBinding` wraps its
accepted and outbound connections in `TLSMemoryBIOFactory` (server side with
the socket's TLS domains, client side verifying the server by host name).

Limits (`sipsock.config.LimitSettings`, rules in `sipsock.limits`): an
accepted connection over the per-socket or per-IP cap is closed as soon as
it is accepted, before any TLS work; a connection that has not sent a whole
first message, or has not finished a header section it started, within
``header_timeout`` seconds is cut; a connection whose peer does not read
(its pending output above ``max_pending_send``) is aborted; a message above
the size limit closes its connection; the outbound pool is bounded. Each hit
is counted and logged through the socket's `LimitReporter`.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ITransport,
)
from twisted.internet.protocol import (
    ClientFactory,
    Factory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.logger import Logger, LogLevel
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.addresses import normal_ip, unbracket
from sipsock.config import LimitSettings
from sipsock.limits import HeaderWatch, address_key, connection_refusal, is_size_error
from sipsock.seams import ListenError, MessageSink, Origin, SocketCounters
from sipsock.sip import KEEPALIVE_PING, SipFramingError, StreamFramer
from sipsock.sockdef import SocketDef
from sipsock.transport.base import Closing, LimitReporter, stop_port
from sipsock.transport.sockopts import (
    apply_update,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
    set_tos,
)
from sipsock.transport.tlserrors import describe_tls_failure

#: Seconds an outbound connect may take.
CONNECT_TIMEOUT: Final = 10.0
#: Outbound connections (open or connecting) one socket may have, unless
#: ``[limits] max_outbound_connections`` says otherwise.
MAX_OUTBOUND_CONNECTIONS: Final = LimitSettings().max_outbound_connections
#: Seconds a connection may take to flush its output when its socket is removed.
FLUSH_TIMEOUT: Final = 5.0
#: The answer to a CRLFCRLF keep-alive ping (RFC 5626 4.4.1).
KEEPALIVE_PONG: Final = b"\r\n"

_connection_ids: Iterator[int] = itertools.count(1)


class TLSBinding(TypingProtocol):
    """The TLS side of a socket (`sipsock.transport.tls.SocketTLS`)."""

    def server_creator(self) -> IOpenSSLServerConnectionCreator:
        """Creates the server side of each accepted connection."""

    def client_creator(self, host: str) -> IOpenSSLClientConnectionCreator:
        """Creates the client side of a connection to ``host`` (verifying it)."""


def pending_output(transport: object) -> tuple[int, int]:
    """Bytes written to a connection and not yet handed to the kernel: (queued, refused).

    ``queued`` is everything waiting; ``refused`` the part the kernel already
    refused once (its send buffer was full: the peer is not reading fast
    enough). Walks down the layers: a WebSocket `MessageTransport` to its
    protocol's transport, TLS (`TLSMemoryBIOProtocol`, counting the
    cleartext it holds before the handshake and the small writes it
    aggregates) to the TCP transport, whose
    `FileDescriptor` write buffer is ``dataBuffer`` from ``offset`` on (tried
    and refused) plus the writes of this reactor turn (``_tempDataLen``, not
    tried yet).
    """
    total = 0
    layer: Any = transport
    for _ in range(8):
        if layer is None:
            break
        waiting = getattr(layer, "_appSendBuffer", None)
        if waiting:
            total += sum(len(chunk) for chunk in waiting)
        # Twisted's BufferingTLSTransport holds small writes (up to 64 kB)
        # until the next reactor turn.
        aggregated = getattr(getattr(layer, "_aggregator", None), "_buffer", None)
        if aggregated:
            total += sum(len(chunk) for chunk in aggregated)
        # (A TLS protocol wrapper forwards unknown attributes to its transport:
        # this finds the TCP buffer from the TLS layer on.)
        buffered = getattr(layer, "dataBuffer", None)
        if isinstance(buffered, bytes):
            refused = len(buffered) - int(getattr(layer, "offset", 0))
            return total + refused + int(getattr(layer, "_tempDataLen", 0)), refused
        inner = getattr(layer, "transport", None)
        if inner is None:
            inner = getattr(getattr(layer, "protocol", None), "transport", None)
        layer = inner
    return total, 0


def outbound_failure(peer: tuple[str, int], reason: Failure) -> Failure:
    """The failure of a send whose connection closed before it was ready."""
    text = describe_tls_failure(reason.value)
    if text is None:
        return reason
    error = ConnectionError(f"TLS handshake with {peer[0]}:{peer[1]} failed: {text}")
    return Failure(error)  # type: ignore[no-untyped-call]


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
        self._idle: IDelayedCall | None = listener.reactor.callLater(
            listener.idle_timeout, self._idle_timeout
        )
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
        """Traffic seen: restart the idle timer."""
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.listener.idle_timeout)

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
        abort: Callable[[], None] | None = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _idle_timeout(self) -> None:
        self._idle = None
        self.listener.limit_reporter.problem(
            "idle connections closed",
            "socket {socket} (slot {slot}): connection {connection} from {peer} "
            "closed: idle for {timeout} s",
            level=LogLevel.info,
            timeout=self.listener.idle_timeout,
            **self._describe(),
        )
        self.transport.loseConnection()

    def _origin(self) -> Origin:
        listener = self.listener
        return Origin(
            sdef=listener.sdef,
            slot=listener.slot,
            peer=self.peer,
            reply=self.reply,
            connection_id=self.id,
            listener=listener,
        )

    def deliver(self, data: bytes) -> None:
        """One whole message arrived on this connection."""
        listener = self.listener
        listener.counters.count_in(data)
        try:
            listener.sink.message_received(data, self._origin())
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
        self.transport.write(data)
        self.touch()
        self.check_pending_output()

    def check_pending_output(self) -> None:
        """Cut the connection if its peer does not read what was written to it.

        Called after every write, including the ones the transport makes by
        itself (WebSocket pongs).
        """
        limit = self.listener.limits.max_pending_send
        queued, refused = pending_output(self.transport)
        # A burst written in one reactor turn has not been offered to the
        # kernel yet: past the limit, a peer is cut once the kernel refused
        # some of its output (it does not read), and in any case past twice
        # the limit (memory stays bounded whatever the burst).
        if queued > limit and (refused > 0 or queued > 2 * limit):
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
            self.transport.loseConnection()
            return
        self.listener.counters.parse_errors += 1
        self.listener.limit_reporter.problem(
            "connections closed on a framing error",
            "socket {socket} (slot {slot}): connection {connection} from {peer} closed: {reason}",
            reason=reason,
            **self._describe(),
        )
        self.open = False
        self.transport.loseConnection()

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
        for timer in (self._idle, self._header):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle = self._header = None
        self.listener.connection_lost(self)


@implementer(IHandshakeListener)
class SipStreamProtocol(Protocol):
    """TCP and TLS framing: `StreamFramer` cuts messages by Content-Length.

    Over TLS an outbound connection is handed over (``on_connected``) once
    the handshake has completed, so a server that fails verification fails
    the send instead of swallowing it.
    """

    def __init__(
        self,
        listener: StreamListener,
        on_connected: Callable[[StreamConnection], None] | None = None,
        on_failed: Callable[[Failure], None] | None = None,
        *,
        inbound: bool = True,
    ) -> None:
        self.listener = listener
        self.on_connected = on_connected
        self.on_failed = on_failed
        self.inbound = inbound
        self.tls = listener.tls is not None
        self.framer = StreamFramer(
            max_message_size=listener.max_message_size,
            max_header_size=min(16384, listener.max_message_size),
        )
        self.connection: StreamConnection | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        address = self.transport.getPeer()
        peer = (str(getattr(address, "host", "")), int(getattr(address, "port", 0)))
        self.connection = self.listener.connection_made(
            self.transport, peer, ready=not self.tls, inbound=self.inbound
        )
        if not self.tls and self.on_connected is not None:
            self.on_connected(self.connection)

    def handshakeCompleted(self) -> None:
        """TLS is up: the connection can carry messages (TLS only)."""
        connection = self.connection
        if connection is None or not connection.open:
            return
        self.listener.connection_ready(connection)
        if self.on_connected is not None:
            self.on_connected(connection)

    def dataReceived(self, data: bytes) -> None:
        if self.connection is None or not self.connection.open:
            return
        connection = self.connection
        self.listener.counters.bytes_in += len(data)
        connection.touch()
        try:
            messages = self.framer.feed(data)
        except SipFramingError as exc:
            # The messages cut before the bad one are valid: deliver them first.
            if self._deliver(connection, exc.messages):
                connection.framing_error(exc.reason, exc)
            return
        connection.fed(data, messages, self.framer.pending)
        self._deliver(connection, messages)

    @staticmethod
    def _deliver(connection: StreamConnection, messages: list[bytes]) -> bool:
        """Hand ``messages`` on in order; False when the connection closed meanwhile."""
        for message in messages:
            if message == KEEPALIVE_PING:
                connection.write(KEEPALIVE_PONG)
            else:
                connection.deliver(message)
            if not connection.open:
                return False
        return True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        connection = self.connection
        if connection is not None:
            connection.lost(reason)
        if self.on_failed is not None and (connection is None or not connection.ready):
            self.on_failed(reason)


class _ServerFactory(ServerFactory):
    noisy = False

    def __init__(self, listener: StreamListener) -> None:
        self.listener = listener

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.listener.build_protocol()


class _AdmissionFactory(ServerFactory):
    """The outermost factory of a listening port: refuses connections over the caps.

    Runs before TLS (it wraps the TLS factory): a refused connection costs
    an accept and a close, no handshake. Returning None from
    ``buildProtocol`` makes the port close the socket at once.
    """

    noisy = False

    def __init__(self, listener: StreamListener, inner: Factory[Any]) -> None:
        self.listener = listener
        self.inner = inner

    def doStart(self) -> None:
        self.inner.doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.inner.doStop()  # type: ignore[no-untyped-call]

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if not self.listener.admit(addr):
            return None
        protocol: Protocol | None = self.inner.buildProtocol(addr)
        return protocol


class _OutboundFactory(ClientFactory):
    """Connects once from the socket's address, then hands the connection over."""

    noisy = False

    def __init__(self, listener: StreamListener, peer: tuple[str, int]) -> None:
        self.listener = listener
        self.peer = peer
        self.waiting: list[Deferred[StreamConnection]] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.listener.build_protocol(
            on_connected=self.connected, outbound=self.peer, on_failed=self.lost_before_ready
        )

    def connected(self, connection: StreamConnection) -> None:
        self.listener.outbound_done(self.peer, connection)
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.callback(connection)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.failed(reason)

    def failed(self, reason: Failure) -> None:
        """The connection could not be had: fail every send waiting for it."""
        self.listener.outbound_done(self.peer)
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.errback(reason)

    def lost_before_ready(self, reason: Failure) -> None:
        """Closed before it was ready (TLS or WebSocket handshake failed): fail the sends."""
        if self.waiting:
            self.failed(outbound_failure(self.peer, reason))

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """Lost before a protocol could report it: fail the sends still waiting."""
        self.lost_before_ready(reason)


class OutboundLimitError(ConnectionError):
    """A socket has as many outbound connections as it may (``max_outbound``)."""

    def __init__(self, sdef: SocketDef, peer: tuple[str, int], limit: int) -> None:
        self.sdef = sdef
        self.peer = peer
        self.limit = limit
        super().__init__(
            f"{sdef.socket_text}: cannot connect to {peer[0]}:{peer[1]}: "
            f"outbound connection limit reached ({limit})"
        )


def peer_key(peer: tuple[str, int]) -> tuple[str, int]:
    """The key of a peer in a socket's connection table: IP addresses in canonical form."""
    host = unbracket(peer[0])
    return normal_ip(host, zone="keep") or host.lower(), peer[1]


class StreamListener:
    """A stream SIP socket: its listening port and all its connections (a `Listener`).

    TCP and TLS (given ``tls``) use it as it is; WebSocket overrides
    `build_protocol`.
    """

    log = Logger()

    def __init__(
        self,
        sdef: SocketDef,
        slot: int | None,
        sink: MessageSink,
        *,
        reactor: Any,
        idle_timeout: float = 180.0,
        max_message_size: int = 65535,
        flush_timeout: float = FLUSH_TIMEOUT,
        tls: TLSBinding | None = None,
        limits: LimitSettings | None = None,
    ) -> None:
        self.sdef = sdef
        self.tls = tls
        self.slot = slot
        self.sink = sink
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.limits = limits if limits is not None else LimitSettings()
        self.max_message_size = min(max_message_size, self.limits.max_stream_message_size)
        self.flush_timeout = flush_timeout
        self.counters = SocketCounters()
        self.limit_reporter = LimitReporter(self, reactor, self.limits.log_interval)
        # Accepted connections open now, in all and by remote IP (the caps).
        self._inbound = 0
        self._inbound_by_ip: dict[str, int] = {}
        self.connections: dict[int, StreamConnection] = {}
        self._by_peer: dict[tuple[str, int], StreamConnection] = {}
        self._outbound: dict[tuple[str, int], tuple[_OutboundFactory, IConnector]] = {}
        # The outbound pool: connection id -> the (host, port) it was opened for.
        self._opened: dict[int, tuple[str, int]] = {}
        self.max_outbound = self.limits.max_outbound_connections
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None
        self._port_closed = False
        self._abort_call: IDelayedCall | None = None

    # -- opening -----------------------------------------------------------

    def build_protocol(
        self,
        on_connected: Callable[[StreamConnection], None] | None = None,
        outbound: tuple[str, int] | None = None,
        on_failed: Callable[[Failure], None] | None = None,
    ) -> Protocol:
        """The protocol of one connection (TCP and TLS: `SipStreamProtocol`).

        ``on_connected`` is called with the `StreamConnection` once it can
        carry messages, ``on_failed`` when it closes before that;
        ``outbound`` is the peer of a connection this socket opens (None for
        an accepted one).
        """
        return SipStreamProtocol(self, on_connected, on_failed, inbound=outbound is None)

    def wrap_factory(
        self, factory: Factory[Any], outbound: tuple[str, int] | None = None
    ) -> Factory[Any]:
        """TLS: wrap the factory of accepted (or, with ``outbound``, opened) connections."""
        if self.tls is None:
            return factory
        if outbound is not None:
            return TLSMemoryBIOFactory(self.tls.client_creator(outbound[0]), True, factory)
        return TLSMemoryBIOFactory(self.tls.server_creator(), False, factory)

    def adopt(self, fd: int) -> None:
        """Accept connections on a bound, listening descriptor (the caller keeps ``fd``)."""
        self._port = self.reactor.adoptStreamPort(
            fd,
            family_of(self.sdef),
            _AdmissionFactory(self, self.wrap_factory(_ServerFactory(self))),
        )
        self.log.info(
            "socket {socket} (slot {slot}) listening", socket=self.sdef.socket_text, slot=self.slot
        )

    # -- connections -------------------------------------------------------

    def admit(self, address: Any) -> bool:
        """Whether a connection just accepted from ``address`` may stay (the caps).

        A refused one is counted and logged (rate-limited) here.
        """
        host = str(getattr(address, "host", ""))
        ip = address_key(host)
        limits = self.limits
        reason = connection_refusal(
            socket_count=self._inbound,
            ip_count=self._inbound_by_ip.get(ip, 0),
            per_socket=limits.max_connections_per_socket,
            per_ip=limits.max_connections_per_ip,
            ip=ip,
        )
        if reason is None:
            return True
        self.limit_reporter.hit(
            "connections", f"refused: {reason}", (host, int(getattr(address, "port", 0)))
        )
        return False

    def connection_made(
        self,
        transport: ITransport,
        peer: tuple[str, int],
        *,
        ready: bool = True,
        inbound: bool = False,
    ) -> StreamConnection:
        """Register a new connection (``inbound``: accepted, else opened by this socket).

        A connection that is not ``ready`` (TLS or WebSocket handshake still
        running) is idle-timed and closed with its socket, but `send` does not
        pick it until `connection_ready`.
        """
        connection = StreamConnection(self, transport, peer, inbound=inbound)
        self.connections[connection.id] = connection
        if inbound:
            ip = address_key(peer[0])
            self._inbound += 1
            self._inbound_by_ip[ip] = self._inbound_by_ip.get(ip, 0) + 1
        if ready:
            self.connection_ready(connection)
        self.counters.connections += 1
        if self.sdef.tos is not None:
            self._set_connection_tos(connection, self.sdef)
        if self._closing is not None:
            connection.close()
        return connection

    @property
    def closing(self) -> bool:
        """True once `stop` was called."""
        return self._closing is not None

    def connection_ready(self, connection: StreamConnection) -> None:
        """The connection's handshakes are done: it carries messages to its peer."""
        connection.ready = True
        self._by_peer[connection.peer] = connection

    def connection_lost(self, connection: StreamConnection) -> None:
        """Forget a closed connection."""
        if self.connections.pop(connection.id, None) is None:
            return
        self.counters.connections -= 1
        if connection.inbound:
            ip = address_key(connection.peer[0])
            self._inbound -= 1
            left = self._inbound_by_ip.get(ip, 1) - 1
            if left > 0:
                self._inbound_by_ip[ip] = left
            else:
                self._inbound_by_ip.pop(ip, None)
        if self._by_peer.get(connection.peer) is connection:
            del self._by_peer[connection.peer]
        opened_for = self._opened.pop(connection.id, None)
        if opened_for is not None and self._by_peer.get(opened_for) is connection:
            del self._by_peer[opened_for]
        self._check_closed()

    def _set_connection_tos(self, connection: StreamConnection, sdef: SocketDef) -> None:
        handle = getattr(connection.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            try:
                set_tos(handle, sdef, sdef.tos or 0)
            except OSError as exc:
                self.limit_reporter.problem(
                    "connections without their tos",
                    "socket {socket} (slot {slot}): cannot set tos on connection "
                    "{connection}: {reason}",
                    connection=connection.id,
                    reason=str(exc),
                )

    # -- Listener ----------------------------------------------------------

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send on the connection to ``peer``, connecting from this socket's address if none.

        Outbound connections are kept per peer (one per address and port,
        reused by every later send) and bounded by ``max_outbound``; a refused
        or timed-out connect, or a full pool (`OutboundLimitError`), fails
        the returned Deferred.
        """
        if self._closing is not None:
            self.counters.drops += 1
            return defer.fail(ConnectionError(f"{self.sdef.socket_text} is closed"))
        peer = peer_key(peer)
        connection = self._by_peer.get(peer)
        if connection is not None and connection.open:
            try:
                connection.send_message(data)
            except ConnectionError as exc:
                return defer.fail(exc)
            return defer.succeed(None)
        connecting = self._connect(peer)

        def write(connection: StreamConnection) -> None:
            connection.send_message(data)

        def failed(failure: Failure) -> Failure:
            self.counters.drops += 1
            self.limit_reporter.problem(
                "failed outbound connections",
                "socket {socket} (slot {slot}): cannot connect to {peer}: {reason}",
                peer=peer,
                reason=failure.getErrorMessage(),
            )
            return failure

        return connecting.addCallbacks(write, failed)

    def _connect(self, peer: tuple[str, int]) -> Deferred[StreamConnection]:
        pending = self._outbound.get(peer)
        if pending is None:
            if len(self._outbound) + len(self._opened) >= self.max_outbound:
                error = OutboundLimitError(self.sdef, peer, self.max_outbound)
                self.limit_reporter.hit(
                    "outbound",
                    f"cannot connect to {peer[0]}:{peer[1]}: {self.max_outbound} outbound "
                    "connections open or connecting (max_outbound_connections)",
                    peer,
                )
                return defer.fail(error)
            factory = _OutboundFactory(self, peer)
            connector = self.connect(peer, self.wrap_factory(factory, outbound=peer))
            pending = self._outbound[peer] = (factory, connector)
        waiter: Deferred[StreamConnection] = Deferred()
        pending[0].waiting.append(waiter)
        return waiter

    def connect(self, peer: tuple[str, int], factory: Factory) -> IConnector:
        """Open an outbound connection from this socket's address."""
        connector: IConnector = self.reactor.connectTCP(
            peer[0],
            peer[1],
            factory,
            timeout=CONNECT_TIMEOUT,
            bindAddress=(self.sdef.host, 0),
        )
        return connector

    def outbound_done(
        self, peer: tuple[str, int], connection: StreamConnection | None = None
    ) -> None:
        """An outbound connect finished: with the ``connection``, or failed (None).

        The connection joins the outbound pool, also under ``peer`` as asked
        (a host name, for TLS) when that differs from its address.
        """
        self._outbound.pop(peer, None)
        if connection is not None and connection.open:
            self._opened[connection.id] = peer
            current = self._by_peer.get(peer)
            if current is None or not current.open:
                self._by_peer[peer] = connection

    def update(self, sdef: SocketDef) -> None:
        """New tag/advertised/tos on the same descriptor and connections."""
        old = self.sdef
        check_same_endpoint(old, sdef)
        if old.tos != sdef.tos:
            if self._port is not None:
                sock = socket.socket(family_of(sdef), socket.SOCK_STREAM, fileno=self.fileno())
                try:
                    apply_update(sock, old, sdef)
                except OSError as exc:
                    raise ListenError(sdef, describe_os_error(exc)) from exc
                finally:
                    sock.detach()
            for connection in list(self.connections.values()):
                self._set_connection_tos(connection, sdef)
        self.sdef = sdef
        self.log.info(
            "socket {socket} (slot {slot}) updated in place",
            socket=sdef.socket_text,
            slot=self.slot,
        )

    def stop(self) -> Deferred[None]:
        """Stop accepting, flush and close every connection; fires when all are closed."""
        if self._closing is None:
            self._closing = Closing()
            self.limit_reporter.stop()
            for _factory, connector in list(self._outbound.values()):
                connector.stopConnecting()
            port = self._port
            stopping: Deferred[None] = stop_port(port) if port is not None else defer.succeed(None)
            stopping.addErrback(self._log_close_error)
            stopping.addCallback(self._port_stopped)
            for connection in list(self.connections.values()):
                connection.close()
            if self.connections:
                self._abort_call = self.reactor.callLater(self.flush_timeout, self._abort_stalled)
        return self._closing.wait()

    def _log_close_error(self, failure: Failure) -> None:
        self.log.failure(
            "socket {socket} (slot {slot}): error while closing",
            failure,
            socket=self.sdef.socket_text,
            slot=self.slot,
        )

    def _port_stopped(self, _: object) -> None:
        self._port_closed = True
        self._check_closed()

    def _abort_stalled(self) -> None:
        self._abort_call = None
        for connection in list(self.connections.values()):
            self.log.warn(
                "socket {socket} (slot {slot}): connection {connection} to {peer} "
                "aborted: output not flushed within {timeout} s",
                socket=self.sdef.socket_text,
                slot=self.slot,
                connection=connection.id,
                peer=connection.peer,
                timeout=self.flush_timeout,
            )
            abort: Callable[[], None] | None = getattr(
                connection.transport, "abortConnection", None
            )
            if abort is not None:
                abort()

    def _check_closed(self) -> None:
        closing = self._closing
        if closing is None or closing.done or not self._port_closed or self.connections:
            return
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        self.log.info(
            "socket {socket} (slot {slot}) closed", socket=self.sdef.socket_text, slot=self.slot
        )
        closing.fire()

    def fileno(self) -> int:
        """The descriptor of the listening socket."""
        if self._port is None:
            raise ValueError(f"{self.sdef.socket_text}: not listening")
        fileno: int = self._port.fileno()  # type: ignore[attr-defined]
        return fileno


def adopt_stream_listener(
    fd: int,
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any,
    idle_timeout: float = 180.0,
    max_message_size: int = 65535,
    tls: TLSBinding | None = None,
    limits: LimitSettings | None = None,
) -> StreamListener:
    """Serve an already listening TCP descriptor (TLS with ``tls``); the caller keeps ``fd``."""
    listener = StreamListener(
        sdef,
        slot,
        sink,
        reactor=reactor,
        idle_timeout=idle_timeout,
        max_message_size=max_message_size,
        tls=tls,
        limits=limits,
    )
    listener.adopt(fd)
    return listener


def open_tcp_listener(
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any,
    idle_timeout: float = 180.0,
    max_message_size: int = 65535,
    tls: TLSBinding | None = None,
    limits: LimitSettings | None = None,
) -> StreamListener:
    """Bind and listen a TCP socket for ``sdef`` and serve it, over TLS with ``tls``.

    Raises `ListenError`.
    """
    sock = bind_socket(sdef)
    try:
        return adopt_stream_listener(
            sock.fileno(),
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            tls=tls,
            limits=limits,
        )
    finally:
        sock.close()
