"""The seams between sockets, the core and the registry: types only, no I/O.

A *listener* is one open SIP socket: a UDP port, or a stream (TCP, TLS, WS,
WSS) listening port with its connections. Whatever the transport, every
received message goes to one `MessageSink` as raw bytes with an `Origin` that
says which socket it came in on, from which peer, and how to answer it. The
sink (the application dispatcher, `sipsock.apps.dispatch.Dispatcher`) never
sees a Twisted transport; the registry and the worker pools see listeners
through `Listener` alone and learn of a socket that cannot be opened through
`ListenError`.

This module is a leaf: at run time it imports the standard library only
(the names under ``TYPE_CHECKING`` are for the type checker), so every layer
may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from sipsock.sip.errors import SipParseError
    from sipsock.sockdef import SocketDef


# Not frozen: a frozen dataclass's __init__ costs about 0.7 us more per
# message (one object.__setattr__ per field). Read-only by convention; equal
# and hashed by value as before.
@dataclass(slots=True, unsafe_hash=True)
class Origin:
    """Where a received message came from (read-only: never assign to its fields).

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
    """Whatever consumes the messages of a listener (the application dispatcher).

    The whole contract between a transport and the core. Every transport
    calls `message_received`; a UDP listener first offers each datagram, a
    stream connection each whole message, to `answer_datagram`; a stream
    connection calls `message_unframeable`
    before it closes on a message it cannot frame. A class that subclasses
    `MessageSink` explicitly inherits the last two as "decline".
    """

    def message_received(self, data: bytes, origin: Origin) -> None:
        """One whole SIP message (not yet parsed) arrived on a socket."""

    def answer_datagram(self, data: bytes, peer: tuple[str, int], sdef: SocketDef) -> bytes | None:
        """The answer to a request datagram, given at once from its bytes, or None.

        A UDP listener offers every datagram here before anything else, a
        stream connection every whole message it cut. The sink either
        returns the whole answer, which the listener sends back to ``peer``
        from ``sdef``'s socket (a stream: on the connection) and counts as
        the general path would, and the datagram goes no further; or it declines (None), and
        the datagram goes to `message_received` as usual. An exception is
        logged by the listener and taken as a decline. Only a request may be
        answered (the listener counts an answered datagram as a received
        request).
        """
        return None

    def message_unframeable(self, header: bytes, error: SipParseError, origin: Origin) -> bool:
        """Answer a stream message that cannot be framed; whether an answer was sent.

        ``header`` is its header section, ``error`` the framer's (with the
        status to answer: 400, or 513 above the size limit). The connection
        is closed afterwards either way.
        """
        return False


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
    because their TLS or WebSocket opening handshake failed. The ``limit_*``
    counters are the hits of each limit of `sipsock.limits.LIMITS`: messages
    above the size limit (``limit_oversize``), connections refused over the
    per-socket or per-IP cap (``limit_connections``), connections cut by the
    header timeout (``limit_header_timeout``) or for not reading their
    output (``limit_send_buffer``), outbound connects refused because the
    pool was full (``limit_outbound``).
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
    limit_oversize: int = 0
    limit_connections: int = 0
    limit_header_timeout: int = 0
    limit_send_buffer: int = 0
    limit_outbound: int = 0

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

    def update(self, sdef: SocketDef) -> Deferred[None] | None:
        """Apply a new definition of the same endpoint in place.

        Raises ValueError for another endpoint, `ListenError` when the kernel
        refuses the new options. A listener served by other processes returns
        a Deferred that fires once every one of them applied it.
        """

    def stop(self) -> Deferred[None]:
        """Close the socket (and its connections); fires when it is closed."""

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one message to ``peer`` from this socket."""

    def fileno(self) -> int:
        """The descriptor of the port (UDP socket or listening stream socket)."""
