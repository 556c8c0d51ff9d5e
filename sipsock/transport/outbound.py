"""The outbound connector of a stream socket: connections it opens to send to a peer.

`OutboundConnector` opens at most one connection per peer at a time, from the
socket's own address, and hands it to every send waiting for it; with the
connections already open (the socket's `ConnectionTable`) it stays under
``[limits] max_outbound_connections`` (`OutboundLimitError` past it). A
connect that fails, times out (`CONNECT_TIMEOUT`) or closes before its TLS
or WebSocket handshake completed fails the waiting sends (`outbound_failure`
names a TLS reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConnector
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure

from sipsock.sockdef import SocketDef
from sipsock.transport.tlserrors import describe_tls_failure

if TYPE_CHECKING:
    from sipsock.transport.connections import ConnectionTable
    from sipsock.transport.stream import StreamListener
    from sipsock.transport.stream_connection import StreamConnection

#: Seconds an outbound connect may take.
CONNECT_TIMEOUT: Final = 10.0


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


def outbound_failure(peer: tuple[str, int], reason: Failure) -> Failure:
    """The failure of a send whose connection closed before it was ready."""
    text = describe_tls_failure(reason.value)
    if text is None:
        return reason
    error = ConnectionError(f"TLS handshake with {peer[0]}:{peer[1]} failed: {text}")
    return Failure(error)  # type: ignore[no-untyped-call]


class OutboundConnector:
    """The connects a socket has under way, one per peer (``listener.max_outbound`` in all)."""

    def __init__(self, listener: StreamListener, table: ConnectionTable[StreamConnection]) -> None:
        self.listener = listener
        self.table = table
        self._pending: dict[tuple[str, int], tuple[OutboundFactory, IConnector]] = {}

    def connect(self, peer: tuple[str, int]) -> Deferred[StreamConnection]:
        """A connection to ``peer`` (a connect under way is shared), or why there is none."""
        pending = self._pending.get(peer)
        if pending is None:
            listener = self.listener
            limit = listener.max_outbound
            if len(self._pending) + self.table.outbound >= limit:
                error = OutboundLimitError(listener.sdef, peer, limit)
                listener.limit_reporter.hit(
                    "outbound",
                    f"cannot connect to {peer[0]}:{peer[1]}: {limit} outbound "
                    "connections open or connecting (max_outbound_connections)",
                    peer,
                )
                return defer.fail(error)
            factory = OutboundFactory(self, peer)
            connector = self._dial(peer, listener.wrap_factory(factory, outbound=peer))
            pending = self._pending[peer] = (factory, connector)
        waiter: Deferred[StreamConnection] = Deferred()
        pending[0].waiting.append(waiter)
        return waiter

    def _dial(self, peer: tuple[str, int], factory: Factory[Any]) -> IConnector:
        """Open an outbound connection from the socket's address."""
        connector: IConnector = self.listener.reactor.connectTCP(
            peer[0],
            peer[1],
            factory,
            timeout=CONNECT_TIMEOUT,
            bindAddress=(self.listener.sdef.host, 0),
        )
        return connector

    def done(self, peer: tuple[str, int], connection: StreamConnection | None = None) -> None:
        """A connect finished: with the ``connection`` (it joins the pool), or failed (None)."""
        self._pending.pop(peer, None)
        if connection is not None and connection.open:
            self.table.opened(peer, connection)

    def stop(self) -> None:
        """The socket closes: stop every connect under way (their sends fail)."""
        for _factory, connector in list(self._pending.values()):
            connector.stopConnecting()


class OutboundFactory(ClientFactory):
    """Connects once from the socket's address, then hands the connection over."""

    noisy = False

    def __init__(self, connector: OutboundConnector, peer: tuple[str, int]) -> None:
        self.connector = connector
        self.peer = peer
        self.waiting: list[Deferred[StreamConnection]] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.connector.listener.build_protocol(
            on_connected=self.connected, outbound=self.peer, on_failed=self.lost_before_ready
        )

    def connected(self, connection: StreamConnection) -> None:
        self.connector.done(self.peer, connection)
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.callback(connection)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.failed(reason)

    def failed(self, reason: Failure) -> None:
        """The connection could not be had: fail every send waiting for it."""
        self.connector.done(self.peer)
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
