"""SIP over stream transports: TCP now, TLS and WebSocket on the same model.

One `StreamListener` is one listening socket and every connection accepted on
it or opened from it. Each connection has a `StreamConnection` (the part every
stream transport shares: id, peer, idle timeout, counters, delivery to the
sink, closing on socket removal) driven by a Twisted protocol that knows how
messages are cut out of the bytes: `SipStreamProtocol` uses
`sipsock.sip.StreamFramer` (TCP and TLS); a WebSocket protocol hands one frame
per message to the same `StreamConnection.deliver`.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConnector, IDelayedCall, IListeningPort, ITransport
from twisted.internet.protocol import (
    ClientFactory,
    Factory,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

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
#: Seconds a connection may take to flush its output when its socket is removed.
FLUSH_TIMEOUT: Final = 5.0
#: The answer to a CRLFCRLF keep-alive ping (RFC 5626 4.4.1).
KEEPALIVE_PONG: Final = b"\r\n"

_connection_ids: Iterator[int] = itertools.count(1)


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
        listener.counters.received += 1
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
        counters = self.listener.counters
        counters.sent += 1
        counters.bytes_out += len(data)

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

    def lost(self) -> None:
        """The transport is gone: stop the timer and leave the listener."""
        self.open = False
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self.listener.connection_lost(self)


class SipStreamProtocol(Protocol):
    """TCP (and TLS) framing: `StreamFramer` cuts messages by Content-Length."""

    def __init__(
        self,
        listener: StreamListener,
        on_connected: Callable[[StreamConnection], None] | None = None,
    ) -> None:
        self.listener = listener
        self.on_connected = on_connected
        self.framer = StreamFramer(
            max_message_size=listener.max_message_size,
            max_header_size=min(16384, listener.max_message_size),
        )
        self.connection: StreamConnection | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        address = self.transport.getPeer()
        peer = (str(getattr(address, "host", "")), int(getattr(address, "port", 0)))
        self.connection = self.listener.connection_made(self.transport, peer)
        if self.on_connected is not None:
            self.on_connected(self.connection)

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
        if self.connection is not None:
            self.connection.lost()


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
        return self.listener.build_protocol(on_connected=self.connected)

    def connected(self, connection: StreamConnection) -> None:
        self.listener.outbound_done(self.peer)
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.callback(connection)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.listener.outbound_done(self.peer)
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.errback(reason)


class StreamListener:
    """A stream SIP socket: its listening port and all its connections (a `Listener`).

    TCP uses it as it is; TLS overrides `wrap_factory` and `connect`.
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
    ) -> None:
        self.sdef = sdef
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
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None
        self._port_closed = False
        self._abort_call: IDelayedCall | None = None

    # -- opening -----------------------------------------------------------

    def build_protocol(
        self, on_connected: Callable[[StreamConnection], None] | None = None
    ) -> Protocol:
        """The protocol of one connection (TCP and TLS: `SipStreamProtocol`).

        ``on_connected`` is called with the `StreamConnection` once it is up
        (outbound connections).
        """
        return SipStreamProtocol(self, on_connected)

    def wrap_factory(self, factory: Factory) -> Factory:
        """Hook for TLS: wrap the factory of accepted and outbound connections."""
        return factory

    def adopt(self, fd: int) -> None:
        """Accept connections on a bound, listening descriptor (the caller keeps ``fd``)."""
        self._port = self.reactor.adoptStreamPort(
            fd, family_of(self.sdef), self.wrap_factory(_ServerFactory(self))
        )
        self.log.info(
            "socket {socket} (slot {slot}) listening", socket=self.sdef.socket_text, slot=self.slot
        )

    # -- connections -------------------------------------------------------

    def connection_made(self, transport: ITransport, peer: tuple[str, int]) -> StreamConnection:
        """Register a new connection (accepted or outbound)."""
        connection = StreamConnection(self, transport, peer)
        self.connections[connection.id] = connection
        self._by_peer[peer] = connection
        self.counters.connections += 1
        if self.sdef.tos is not None:
            self._set_connection_tos(connection, self.sdef)
        if self._closing is not None:
            connection.close()
        return connection

    def connection_lost(self, connection: StreamConnection) -> None:
        """Forget a closed connection."""
        if self.connections.pop(connection.id, None) is None:
            return
        self.counters.connections -= 1
        if self._by_peer.get(connection.peer) is connection:
            del self._by_peer[connection.peer]
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
        """Send on the connection to ``peer``, connecting from this socket's address if none."""
        if self._closing is not None:
            self.counters.drops += 1
            return defer.fail(ConnectionError(f"{self.sdef.socket_text} is closed"))
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
            factory = _OutboundFactory(self, peer)
            connector = self.connect(peer, self.wrap_factory(factory))
            pending = self._outbound[peer] = (factory, connector)
        waiter: Deferred[StreamConnection] = Deferred()
        pending[0].waiting.append(waiter)
        return waiter

    def connect(self, peer: tuple[str, int], factory: Factory) -> IConnector:
        """Open an outbound connection from this socket's address (TLS overrides)."""
        connector: IConnector = self.reactor.connectTCP(
            peer[0],
            peer[1],
            factory,
            timeout=CONNECT_TIMEOUT,
            bindAddress=(self.sdef.host, 0),
        )
        return connector

    def outbound_done(self, peer: tuple[str, int]) -> None:
        """An outbound connect finished (either way)."""
        self._outbound.pop(peer, None)

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
) -> StreamListener:
    """Serve an already listening TCP descriptor; the caller still owns ``fd``."""
    listener = StreamListener(
        sdef,
        slot,
        sink,
        reactor=reactor,
        idle_timeout=idle_timeout,
        max_message_size=max_message_size,
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
) -> StreamListener:
    """Bind and listen a TCP socket for ``sdef`` and serve it (raises `ListenError`)."""
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
        )
    finally:
        sock.close()
