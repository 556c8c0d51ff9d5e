"""A stream SIP socket (TCP, TLS; WS and WSS build on it): its listening port and connections.

One `StreamListener` is one listening socket and every connection accepted on
it or opened from it (a `sipsock.seams.Listener`): it accepts (refusing a
connection over the per-socket or per-IP cap as soon as it is accepted,
before any TLS work), registers each connection in its `ConnectionTable`
(`sipsock.transport.connections`), sends to a peer on its connection or
through its `OutboundConnector` (`sipsock.transport.outbound`), updates in
place and closes (flushing, then aborting what does not flush within
``flush_timeout``).

Each connection is a `StreamConnection` (`sipsock.transport.stream_connection`:
timers, limits, delivery) driven by a Twisted protocol that cuts messages out
of the bytes: `SipStreamProtocol` (`sipsock.transport.stream_protocol`) for
TCP and TLS, the WebSocket protocols of `sipsock.transport.ws`.

TLS is a layer under the protocol: a listener given a `TLSBinding` wraps its
accepted and outbound connections in `ReadBatchingTLSFactory`
(`sipsock.transport.tlswrite`: server side with the socket's TLS domains,
client side verifying the server by host name).

Limits (`sipsock.config.LimitSettings`, rules in `sipsock.limits`): each hit
is counted and logged through the socket's `LimitReporter`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Final
from typing import Protocol as TypingProtocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.config import LimitSettings
from sipsock.seams import ListenError, MessageSink, SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.transport.base import Closing, LimitReporter, stop_port
from sipsock.transport.connections import ConnectionTable, peer_key
from sipsock.transport.outbound import OutboundConnector
from sipsock.transport.sockopts import (
    apply_update,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
    set_tos,
)
from sipsock.transport.stream_connection import StreamConnection
from sipsock.transport.stream_protocol import SipStreamProtocol
from sipsock.transport.tlswrite import ReadBatchingTLSFactory

#: Outbound connections (open or connecting) one socket may have, unless
#: ``[limits] max_outbound_connections`` says otherwise.
MAX_OUTBOUND_CONNECTIONS: Final = LimitSettings().max_outbound_connections
#: Seconds a connection may take to flush its output when its socket is removed.
FLUSH_TIMEOUT: Final = 5.0


class TLSBinding(TypingProtocol):
    """The TLS side of a socket (`sipsock.transport.tls.SocketTLS`)."""

    def server_creator(self) -> IOpenSSLServerConnectionCreator:
        """Creates the server side of each accepted connection."""

    def client_creator(self, host: str) -> IOpenSSLClientConnectionCreator:
        """Creates the client side of a connection to ``host`` (verifying it)."""


class ConnectionWatcher(TypingProtocol):
    """Told when a connection of a socket starts or stops carrying messages.

    A stream worker reports these to the control process, which finds the
    worker holding a peer's connection by them.
    """

    def connection_up(self, listener: StreamListener, peer: tuple[str, int], inbound: bool) -> None:
        """A connection to ``peer`` (``inbound``: accepted) is ready."""

    def connection_down(
        self, listener: StreamListener, peer: tuple[str, int], inbound: bool
    ) -> None:
        """A ready connection to ``peer`` closed."""


class _ServerFactory(ServerFactory):
    """The factory of accepted connections: each gets the listener's protocol."""

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
        self._table: ConnectionTable[StreamConnection] = ConnectionTable()
        #: The connections of this socket by id (accepted and opened, ready or not).
        self.connections = self._table.connections
        self._by_peer = self._table.by_peer  # the table's own dict: one look-up per send
        #: The ready connection a send to a peer (`peer_key`) uses.
        self.connections_by_peer = self._by_peer
        self.outbound = OutboundConnector(self, self._table)
        self.max_outbound = self.limits.max_outbound_connections
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None
        self._port_closed = False
        self._abort_call: IDelayedCall | None = None
        #: Told of connections that become ready and close (a stream worker's reporter).
        self.watcher: ConnectionWatcher | None = None

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
            return ReadBatchingTLSFactory(self.tls.client_creator(outbound[0]), True, factory)
        return ReadBatchingTLSFactory(self.tls.server_creator(), False, factory)

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
        limits = self.limits
        reason = self._table.refusal(
            host, limits.max_connections_per_socket, limits.max_connections_per_ip
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
        self._table.add(connection)
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
        self._table.ready(connection)
        if self.watcher is not None:
            self.watcher.connection_up(self, connection.peer, connection.inbound)

    def connection_lost(self, connection: StreamConnection) -> None:
        """Forget a closed connection."""
        if not self._table.remove(connection):
            return
        self.counters.connections -= 1
        if self.watcher is not None and connection.ready:
            self.watcher.connection_down(self, connection.peer, connection.inbound)
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
        connecting = self.outbound.connect(peer)

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
            self.outbound.stop()
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

    @property
    def port(self) -> IListeningPort | None:
        """The listening port (None before `adopt`)."""
        return self._port

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
