"""Types shared by every transport, and `open_listener`.

A *listener* is one open SIP socket: a UDP port, or a stream (TCP, later TLS
and WS) listening port with its connections. Whatever the transport, every
received message goes to one `MessageSink` as raw bytes with an `Origin` that
says which socket it came in on, from which peer, and how to answer it. The
sink (the application dispatcher) never sees a Twisted transport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from sipsock.sockdef import SocketDef

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from sipsock.config import WebSocketSettings
    from sipsock.transport.tls import TLSDomains

#: Largest datagram the reactor reads; SIP over UDP may use all of it.
MAX_DATAGRAM_SIZE = 65535


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a received message came from.

    ``sdef`` and ``slot`` name the receiving socket as it was when the message
    arrived; ``peer`` is the sender's (host, port); ``reply(data)`` sends bytes
    back the way the message came (same UDP socket to the same address, or the
    same stream connection). ``connection_id`` is set for stream transports and
    unique in the process. ``listener`` is the receiving listener, for sending
    new messages from the same socket.
    """

    sdef: SocketDef
    slot: int | None
    peer: tuple[str, int]
    reply: Callable[[bytes], None]
    connection_id: int | None = None
    listener: Listener | None = None


class MessageSink(Protocol):
    """Whatever consumes the messages of a listener (the application dispatcher)."""

    def message_received(self, data: bytes, origin: Origin) -> None:
        """One whole SIP message (not yet parsed) arrived on a socket."""


class ListenError(Exception):
    """A socket that cannot be opened, with a reason a person can act on.

    ``str(error)`` is ``"<proto:host:port>: <reason>"``.
    """

    def __init__(self, sdef: SocketDef, reason: str) -> None:
        self.sdef = sdef
        self.reason = reason
        super().__init__(f"{sdef.socket_text}: {reason}")


@dataclass
class SocketCounters:
    """Traffic counters of one socket (all its connections for a stream socket).

    ``received``/``sent`` count SIP messages, ``replies_in``/``replies_out``
    the responses among them (the rest are requests), ``bytes_in``/``bytes_out`` raw
    bytes, ``parse_errors`` messages or streams that could not be read,
    ``drops`` messages thrown away for any other reason (a failed send, a reply
    to a closed connection, an application error), ``connections`` the stream
    connections open right now, ``handshake_failures`` connections closed
    because their TLS or WebSocket opening handshake failed.
    """

    received: int = 0
    sent: int = 0
    replies_in: int = 0
    replies_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    parse_errors: int = 0
    drops: int = 0
    connections: int = 0
    handshake_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for the MI."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count_in(self, data: bytes) -> None:
        """One SIP message received (a response when it starts with the SIP version)."""
        self.received += 1
        if data.startswith(b"SIP/"):
            self.replies_in += 1

    def count_out(self, data: bytes) -> None:
        """One SIP message sent: ``sent``, ``replies_out`` and ``bytes_out``."""
        self.sent += 1
        self.bytes_out += len(data)
        if data.startswith(b"SIP/"):
            self.replies_out += 1


class Closing:
    """Deferreds that all fire once, when something has finished closing."""

    def __init__(self) -> None:
        self.done = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        """A new Deferred that fires when `fire` is (or was) called."""
        from twisted.internet.defer import Deferred, succeed

        if self.done:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self) -> None:
        """Fire every waiter, now and later."""
        self.done = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


def stop_port(port: Any) -> Deferred[None]:
    """``port.stopListening()`` as a Deferred that fires with None (or the error)."""
    from twisted.internet.defer import Deferred, fail, succeed

    try:
        result = port.stopListening()
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result.addCallback(lambda _: None)
    return succeed(None)


class Listener(Protocol):
    """One open SIP socket, whatever its transport.

    ``update`` takes a definition with the same ``endpoint`` and applies the
    new tag, advertised address, tos and frag flag to the next message, on the
    same descriptor. ``stop`` stops reading (or accepting), flushes and closes
    every stream connection and fires once the port is closed. ``send`` sends
    bytes to a peer from this socket (a stream socket reuses a connection to
    that peer, or connects from this socket's address).
    """

    sdef: SocketDef
    slot: int | None
    counters: SocketCounters

    def update(self, sdef: SocketDef) -> None:
        """Apply a new definition of the same endpoint in place.

        Raises ValueError for another endpoint, `ListenError` when the kernel
        refuses the new options.
        """

    def stop(self) -> Deferred[None]:
        """Close the socket (and its connections); fires when it is closed."""

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one message to ``peer`` from this socket."""

    def fileno(self) -> int:
        """The descriptor of the port (UDP socket or listening stream socket)."""


def open_listener(
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any = None,
    idle_timeout: float = 180.0,
    max_message_size: int = 65535,
    tls: TLSDomains | None = None,
    websocket: WebSocketSettings | None = None,
) -> Listener:
    """Bind ``sdef`` and start serving it; returns the running listener.

    Binding is synchronous: a socket that cannot be opened raises
    `ListenError` before anything reaches the reactor. UDP sockets are created
    here and adopted by the reactor; stream sockets are created, bound and put
    to listen here, then adopted. TLS and WSS sockets take their certificates
    from ``tls`` (no domain serving the socket is a `ListenError` saying so);
    WS and WSS sockets follow ``websocket`` (origins, limits, keep-alive).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if sdef.proto == "udp":
        from sipsock.transport.udp import open_udp_listener

        return open_udp_listener(sdef, slot, sink, reactor=reactor)
    binding = _tls_binding(sdef, tls) if sdef.proto in ("tls", "wss") else None
    if sdef.proto in ("tcp", "tls"):
        from sipsock.transport.stream import open_tcp_listener

        return open_tcp_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            tls=binding,
        )
    if sdef.proto in ("ws", "wss"):
        from sipsock.transport.ws import open_ws_listener

        return open_ws_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            websocket=websocket,
            tls=binding,
        )
    raise ListenError(sdef, f"protocol {sdef.proto} is not supported")


def _tls_binding(sdef: SocketDef, tls: TLSDomains | None) -> Any:
    """The TLS side of a TLS/WSS socket; `ListenError` when no domain serves it."""
    from sipsock.transport.tls import TLSError

    if tls is None:
        raise ListenError(sdef, "no TLS domain is configured ([[tls.domain]] in [tls])")
    try:
        return tls.context_for(sdef)
    except TLSError as error:
        raise ListenError(sdef, error.reason) from None
