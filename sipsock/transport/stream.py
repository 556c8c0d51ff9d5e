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
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final
from typing import Protocol as TypingProtocol

from OpenSSL import SSL
from service_identity import VerificationError
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
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.sip import KEEPALIVE_PING, SipFramingError, StreamFramer
from sipsock.sockdef import SocketDef
from sipsock.transport.base import (
    Closing,
    ListenError,
    MessageSink,
    Origin,
    SocketCounters,
    stop_port,
)
from sipsock.transport.sockopts import (
    apply_update,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
    set_tos,
)

#: Seconds an outbound connect may take.
CONNECT_TIMEOUT: Final = 10.0
#: Outbound connections (open or connecting) one socket may have.
MAX_OUTBOUND_CONNECTIONS: Final = 1024
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


def describe_tls_error(error: SSL.Error) -> str:
    """The OpenSSL reasons of a TLS failure, short ("certificate verify failed")."""
    reasons: list[str] = []
    details = error.args[0] if error.args and isinstance(error.args[0], list) else []
    for item in details:
        if isinstance(item, tuple) and item and str(item[-1]) not in reasons:
            reasons.append(str(item[-1]))
    return ", ".join(reasons) or str(error) or "TLS error"


def describe_tls_failure(error: BaseException | None) -> str | None:
    """Why a TLS handshake failed, or None when ``error`` is not a TLS failure.

    OpenSSL errors, and the host-name check of the client side
    (service-identity: the certificate does not name the server).
    """
    if isinstance(error, SSL.Error):
        return describe_tls_error(error)
    if isinstance(error, VerificationError):
        names: list[str] = []
        for mismatch in error.errors:
            wanted = getattr(mismatch, "mismatched_id", None)
            name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None) or mismatch
            names.append(str(name))
        return f"the server certificate does not name {', '.join(names)}"
    return None


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
    """

    log = Logger()

    def __init__(
        self, listener: StreamListener, transport: ITransport, peer: tuple[str, int]
    ) -> None:
        self.listener = listener
        self.transport = transport
        self.peer = peer
        self.id = next(_connection_ids)
        self.open = True
        self.ready = False
        self.handshake_error: str | None = None
        self._idle: IDelayedCall | None = listener.reactor.callLater(
            listener.idle_timeout, self._idle_timeout
        )

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

    def _idle_timeout(self) -> None:
        self._idle = None
        self.log.info(
            "socket {socket} (slot {slot}): connection {connection} from {peer} "
            "closed: idle for {timeout} s",
            timeout=self.listener.idle_timeout,
            **self._describe(),
        )
        self.transport.loseConnection()

    def deliver(self, data: bytes) -> None:
        """One whole message arrived on this connection."""
        listener = self.listener
        listener.counters.count_in(data)
        origin = Origin(
            sdef=listener.sdef,
            slot=listener.slot,
            peer=self.peer,
            reply=self.reply,
            connection_id=self.id,
            listener=listener,
        )
        try:
            listener.sink.message_received(data, origin)
        except Exception:
            listener.counters.drops += 1
            self.log.failure(
                "socket {socket} (slot {slot}): message from {peer} dropped: "
                "the message sink raised",
                **self._describe(),
            )

    def write(self, data: bytes) -> None:
        """Queue bytes on the connection (raises ConnectionError once it is closed)."""
        if not self.open:
            self.listener.counters.drops += 1
            raise ConnectionError(f"connection {self.id} to {self.peer} is closed")
        self.transport.write(data)
        self.touch()

    def send_message(self, data: bytes) -> None:
        """Write one SIP message and count it."""
        self.write(data)
        self.listener.counters.count_out(data)

    def reply(self, data: bytes) -> None:
        """Answer on this connection; a closed connection drops (and logs) the reply."""
        try:
            self.send_message(data)
        except ConnectionError as exc:
            self.log.warn(
                "socket {socket} (slot {slot}): reply to {peer} dropped: {reason}",
                reason=exc,
                **self._describe(),
            )

    def framing_error(self, reason: str) -> None:
        """The byte stream cannot be read any more: count, log and close."""
        self.listener.counters.parse_errors += 1
        self.log.warn(
            "socket {socket} (slot {slot}): connection {connection} from {peer} closed: {reason}",
            reason=reason,
            **self._describe(),
        )
        self.open = False
        self.transport.loseConnection()

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
        self.log.info(
            "socket {socket} (slot {slot}): connection {connection} from {peer} closed: "
            "handshake failed: {reason}",
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
            self.log.info(
                "socket {socket} (slot {slot}): connection {connection} from {peer} "
                "closed: TLS error: {reason}",
                reason=tls_error,
                **self._describe(),
            )
        self.open = False
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
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
    ) -> None:
        self.listener = listener
        self.on_connected = on_connected
        self.on_failed = on_failed
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
        self.connection = self.listener.connection_made(self.transport, peer, ready=not self.tls)
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
            connection.framing_error(exc.reason)
            return
        for message in messages:
            if message == KEEPALIVE_PING:
                connection.write(KEEPALIVE_PONG)
            else:
                connection.deliver(message)
            if not connection.open:
                return

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
    host = peer[0].strip("[]")
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        host = host.lower()
    return host, peer[1]


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
    ) -> None:
        self.sdef = sdef
        self.tls = tls
        self.slot = slot
        self.sink = sink
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.flush_timeout = flush_timeout
        self.counters = SocketCounters()
        self.connections: dict[int, StreamConnection] = {}
        self._by_peer: dict[tuple[str, int], StreamConnection] = {}
        self._outbound: dict[tuple[str, int], tuple[_OutboundFactory, IConnector]] = {}
        # The outbound pool: connection id -> the (host, port) it was opened for.
        self._opened: dict[int, tuple[str, int]] = {}
        self.max_outbound = MAX_OUTBOUND_CONNECTIONS
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
        return SipStreamProtocol(self, on_connected, on_failed)

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
            fd, family_of(self.sdef), self.wrap_factory(_ServerFactory(self))
        )
        self.log.info(
            "socket {socket} (slot {slot}) listening", socket=self.sdef.socket_text, slot=self.slot
        )

    # -- connections -------------------------------------------------------

    def connection_made(
        self, transport: ITransport, peer: tuple[str, int], *, ready: bool = True
    ) -> StreamConnection:
        """Register a new connection (accepted or outbound).

        A connection that is not ``ready`` (TLS or WebSocket handshake still
        running) is idle-timed and closed with its socket, but `send` does not
        pick it until `connection_ready`.
        """
        connection = StreamConnection(self, transport, peer)
        self.connections[connection.id] = connection
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
                self.log.warn(
                    "socket {socket} (slot {slot}): cannot set tos on connection "
                    "{connection}: {reason}",
                    socket=sdef.socket_text,
                    slot=self.slot,
                    connection=connection.id,
                    reason=exc,
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
            self.log.warn(
                "socket {socket} (slot {slot}): cannot connect to {peer}: {reason}",
                socket=self.sdef.socket_text,
                slot=self.slot,
                peer=peer,
                reason=failure.getErrorMessage(),
            )
            return failure

        return connecting.addCallbacks(write, failed)

    def _connect(self, peer: tuple[str, int]) -> Deferred[StreamConnection]:
        pending = self._outbound.get(peer)
        if pending is None:
            if len(self._outbound) + len(self._opened) >= self.max_outbound:
                return defer.fail(OutboundLimitError(self.sdef, peer, self.max_outbound))
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
        )
    finally:
        sock.close()
