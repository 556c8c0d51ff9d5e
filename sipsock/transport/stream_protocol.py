"""SIP over TCP and TLS: the Twisted protocol that cuts messages out of a byte stream.

`SipStreamProtocol` feeds each read to `sipsock.sip.StreamFramer` (messages
cut by Content-Length), answers CRLFCRLF keep-alive pings, and hands whole
messages, framing errors and the end of the connection to its
`StreamConnection` (`sipsock.transport.stream_connection`). Over TLS it
reports the connection ready once the handshake completed. The WebSocket
framing is `sipsock.transport.ws`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.sip import KEEPALIVE_PING, SipFramingError, StreamFramer
from sipsock.transport.logcontext import skip_log_context

if TYPE_CHECKING:
    from sipsock.transport.stream import StreamListener
    from sipsock.transport.stream_connection import StreamConnection

#: The answer to a CRLFCRLF keep-alive ping (RFC 5626 4.4.1).
KEEPALIVE_PONG: Final = b"\r\n"


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
        skip_log_context(self.transport)
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
        # The answers to the messages of this read leave together at its end.
        connection.hold_output()
        try:
            try:
                messages = self.framer.feed(data)
            except SipFramingError as exc:
                # The messages cut before the bad one are valid: deliver them first.
                if self._deliver(connection, exc.messages):
                    connection.framing_error(exc.reason, exc)
                return
            connection.fed(data, messages, self.framer.pending)
            self._deliver(connection, messages)
        finally:
            connection.release_output()

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
