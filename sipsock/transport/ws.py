"""SIP over WebSocket (RFC 7118): WS and WSS sockets on the stream connection model.

A `WebSocketListener` is a `StreamListener` whose connections speak
WebSocket (autobahn) instead of raw SIP framing: one SIP message per
WebSocket message, text or binary. Everything else is the stream model's:
each connection has a `StreamConnection` from the moment TCP is up (idle
timeout, counters, closing on socket removal), which becomes *ready* (picked
by `send`) once the opening handshake is done. WSS is the same listener with
a `TLSBinding` under it.

The opening handshake must offer the ``sip`` subprotocol (the server answers
with it: autobahn does not pick it by itself) and, unless the config says
otherwise, carry an ``Origin`` that the allowed-origins list accepts. Messages
and frames above the size limit (``[limits] max_ws_message_size`` and
``max_ws_frame_size``, counted as ``limit_oversize``), broken frames and
invalid UTF-8 in text messages close that connection (status 1009, 1002 or
1007), never the socket. An accepted connection that has not finished its
opening handshake (its header section) within ``[limits] header_timeout`` is
cut; one whose handshake grows past `MAX_HANDSHAKE_SIZE` bytes (the TCP header
section limit) without ending is refused with 431 and closed (counted as
``limit_oversize``). A plain HTTP request (no ``Upgrade``) gets 426 and
nothing else: autobahn's status page (its version, a ``?redirect=`` open
redirect) is off, and the ``Server`` header says ``sipsock``.
Keep-alive: the server pings every ``ping_interval`` seconds and drops a peer
that does not answer within ``ping_timeout``; a CRLFCRLF message gets CRLF.
Every write, autobahn's automatic pongs included, is held to ``[limits]
max_pending_send``: a peer that sends pings and never reads is cut.

The common frame (one whole message in one final text or binary frame) is
read without autobahn (`sipsock.transport.wsrules.read_frame`, with
autobahn's default options), and a server writes its messages' frames
itself (`sipsock.transport.wsframes`): the answers to one read leave in one
write. Every other frame, and every fault, is autobahn's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from txaio.tx import make_logger

from sipsock.addresses import bracket
from sipsock.config import LimitSettings, WebSocketSettings
from sipsock.seams import MessageSink
from sipsock.sip import KEEPALIVE_PING
from sipsock.sockdef import SocketDef
from sipsock.transport.sockopts import bind_socket
from sipsock.transport.stream import StreamListener, TLSBinding
from sipsock.transport.stream_connection import StreamConnection
from sipsock.transport.stream_protocol import KEEPALIVE_PONG
from sipsock.transport.tlserrors import describe_tls_failure
from sipsock.transport.wsframes import MessageTransport, frame_limit
from sipsock.transport.wsrules import (
    CLOSE_TOO_BIG,
    HANDSHAKE_TOO_LARGE,
    MAX_HANDSHAKE_SIZE,
    SUBPROTOCOL,
    handshake_overflows,
    handshake_refusal,
    is_text,
    origin_allowed,
    read_frame,
    split_origin,
)

__all__ = [
    "SUBPROTOCOL",
    "MessageTransport",
    "WebSocketListener",
    "handshake_refusal",
    "is_text",
    "open_ws_listener",
    "origin_allowed",
    "split_origin",
]

# -- connections -------------------------------------------------------------------


class _SipWebSocketMixin:
    """The SIP side of a WebSocket protocol, server or client.

    autobahn's attributes (``state``, ``transport``, ``failedByMe``...) are
    read through ``Any``; nothing here overrides autobahn's own names.
    """

    listener: WebSocketListener
    connection: StreamConnection | None
    on_connected: Callable[[StreamConnection], None] | None
    on_failed: Callable[[Failure], None] | None
    _ping_payload: bytes | None = None
    _ping_call: IDelayedCall | None = None
    _handshake_refused: bool = False
    _messages: MessageTransport | None = None
    #: The largest single-frame message read without autobahn; 0 while
    #: every frame goes through autobahn (before the WebSocket opens).
    _frame_limit: int = 0

    def _sip_data(self, data: bytes) -> bool:
        """Whether autobahn may have these bytes (False once the handshake is too large)."""
        me: Any = self
        if self._handshake_refused:
            return False
        if me.state != WebSocketProtocol.STATE_CONNECTING:
            return True
        limit = self.listener.max_handshake_size
        if not handshake_overflows(me.data, data, limit):
            return True
        self._handshake_refused = True
        me.data = b""
        connection = self.connection
        reason = f"WebSocket opening handshake above {limit} bytes"
        if connection is not None and connection.open:
            connection.open = False
            self.listener.limit_reporter.hit(
                "oversize", f"{reason} (connection {connection.id})", connection.peer
            )
        self._refuse_handshake(reason)
        return False

    def _refuse_handshake(self, reason: str) -> None:
        me: Any = self
        me.wasNotCleanReason = reason
        me.dropConnection(abort=True)

    def _sip_ping(self, payload: bytes, pong: Callable[[bytes], None]) -> None:
        """Answer a ping (``pong`` is autobahn's answer), held to max_pending_send.

        autobahn's own pong skips every limit; a connection cut for not
        reading gets no more pongs (its buffered pings are still parsed).
        """
        self._sip_traffic()
        connection = self.connection
        if connection is not None and not connection.open:
            return
        pong(payload)
        if connection is not None:
            connection.check_pending_output()

    def _sip_connection_made(self) -> None:
        me: Any = self
        address = me.transport.getPeer()
        peer = (str(getattr(address, "host", "")), int(getattr(address, "port", 0)))
        self._messages = MessageTransport(me)
        self.connection = self.listener.connection_made(
            self._messages,
            peer,
            ready=False,
            inbound=isinstance(self, WebSocketServerProtocol),
        )

    def _sip_open(self) -> None:
        connection = self.connection
        if connection is None or not connection.open:
            return
        self._choose_framing()
        self.listener.connection_ready(connection)
        # The opening handshake is a WebSocket connection's header section.
        connection.message_completed()
        self._schedule_ping()
        if self.on_connected is not None:
            self.on_connected(connection)

    def _choose_framing(self) -> None:
        """Read (and, on a server, write) the common frames without autobahn when it can."""
        me: Any = self
        server = isinstance(self, WebSocketServerProtocol)
        self._frame_limit = frame_limit(me, server)
        messages = self._messages
        if messages is not None and self._frame_limit and server:
            messages.frames_itself = not me.autoFragmentSize

    def _sip_frames(self, data: bytes, autobahn: Callable[[bytes], None]) -> None:
        """Deliver the whole data frames of a read; hand the rest to ``autobahn``.

        Frames are read here while autobahn is between frames and messages
        (`read_frame`); from the first frame it would read otherwise on, the
        bytes go to autobahn. The answers written meanwhile leave together,
        before autobahn writes anything (a pong, a close).
        """
        me: Any = self
        limit = self._frame_limit
        if (
            not limit
            or me.state != WebSocketProtocol.STATE_OPEN
            or me.current_frame is not None
            or me.inside_message
        ):
            autobahn(data)
            return
        buffered = me.data
        if buffered:
            # The start of a frame autobahn kept from the last read.
            data = buffered + data
            me.data = b""
        masked = isinstance(self, WebSocketServerProtocol)
        messages = self._messages
        start = 0
        if messages is not None:
            messages.hold()
        try:
            while True:
                cut = read_frame(data, start, masked, limit)
                if cut is None:
                    break
                payload, _, start = cut
                self._sip_message(payload)
                if me.state != WebSocketProtocol.STATE_OPEN:
                    break
        finally:
            if messages is not None:
                messages.release()
        if start < len(data):
            autobahn(data[start:] if start else data)

    # Keep-alive with the listener's reactor: autobahn's own auto-ping runs on
    # a timer that rounds delays down to whole seconds (a 1 s timeout may fire
    # at once).

    def _schedule_ping(self) -> None:
        interval = self.listener.websocket.ping_interval
        if interval > 0:
            self._ping_call = self.listener.reactor.callLater(interval, self._send_ping)

    def _send_ping(self) -> None:
        me: Any = self
        self._ping_call = None
        if me.state != WebSocketProtocol.STATE_OPEN:
            return
        self._ping_payload = os.urandom(8)
        me.sendPing(self._ping_payload)
        self._ping_call = self.listener.reactor.callLater(
            self.listener.websocket.ping_timeout, self._ping_timed_out
        )

    def _ping_timed_out(self) -> None:
        me: Any = self
        self._ping_call = None
        connection = self.connection
        if connection is not None and connection.open:
            self.listener.limit_reporter.problem(
                "connections dropped without a pong",
                "socket {socket} (slot {slot}): connection {connection} from {peer} dropped: "
                "no pong within {timeout} s",
                level=LogLevel.info,
                connection=connection.id,
                peer=connection.peer,
                timeout=self.listener.websocket.ping_timeout,
            )
        me.transport.abortConnection()

    def _sip_pong(self, payload: bytes) -> None:
        self._sip_traffic()
        if self._ping_payload is not None and payload == self._ping_payload:
            self._ping_payload = None
            self._cancel_ping()
            self._schedule_ping()

    def _cancel_ping(self) -> None:
        if self._ping_call is not None and self._ping_call.active():
            self._ping_call.cancel()
        self._ping_call = None

    def _sip_message(self, payload: bytes) -> None:
        connection = self.connection
        if connection is None or not connection.open or not connection.ready:
            return
        self.listener.counters.bytes_in += len(payload)
        connection.touch()
        if payload == KEEPALIVE_PING:
            connection.write(KEEPALIVE_PONG)
            return
        connection.deliver(payload)

    def _sip_traffic(self) -> None:
        if self.connection is not None:
            self.connection.touch()

    def _sip_closed(self) -> None:
        connection = self.connection
        if connection is None or not connection.open:
            return
        me: Any = self
        if connection.ready and me.failedByMe and me.localCloseCode == CLOSE_TOO_BIG:
            connection.open = False
            options = self.listener.protocol_limits()
            self.listener.limit_reporter.hit(
                "oversize",
                f"WebSocket frame above {options['maxFramePayloadSize']} bytes or message "
                f"above {options['maxMessagePayloadSize']} bytes "
                f"(status {CLOSE_TOO_BIG}, connection {connection.id})",
                connection.peer,
            )
        elif connection.ready and me.failedByMe:
            reason = me.localCloseReason or me.wasNotCleanReason or "protocol error"
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            connection.framing_error(f"WebSocket: {reason} (status {me.localCloseCode})")
        elif not connection.ready and me.wasNotCleanReason:
            connection.handshake_failed(f"WebSocket: {me.wasNotCleanReason}")

    def _sip_connection_lost(self, reason: Failure) -> None:
        self._cancel_ping()
        connection = self.connection
        if connection is not None:
            connection.lost(reason)
        if self.on_failed is not None and (connection is None or not connection.ready):
            me: Any = self
            why = me.wasNotCleanReason
            if why and describe_tls_failure(reason.value) is None:
                reason = Failure(ConnectionError(f"WebSocket handshake failed: {why}"))  # type: ignore[no-untyped-call]
            self.on_failed(reason)


#: Seconds a refused handshake's answer has to leave before the connection is aborted.
REFUSAL_GRACE: Final = 1.0

#: autobahn's own logger for our protocols: errors only. Its info and warning
#: lines (one or two per refused handshake) repeat what `StreamConnection`
#: logs and counts, and a scanner would turn them into a flood.
_AUTOBAHN_LOG: Any = make_logger(level="error")  # type: ignore[no-untyped-call]


class SipWebSocketServerProtocol(_SipWebSocketMixin, WebSocketServerProtocol):  # type: ignore[misc]
    """An accepted SIP-over-WebSocket connection."""

    log = _AUTOBAHN_LOG

    def __init__(self, listener: WebSocketListener) -> None:
        super().__init__()
        self.listener = listener
        self.connection = None
        self.on_connected = None
        self.on_failed = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._sip_connection_made()

    def dataReceived(self, data: bytes) -> None:
        if self._sip_data(data):
            self._sip_frames(data, super().dataReceived)

    def _refuse_handshake(self, reason: str) -> None:
        me: Any = self
        me.wasNotCleanReason = reason
        me.sendHttpErrorResponse(HANDSHAKE_TOO_LARGE, "Request Header Fields Too Large")
        me.dropConnection(abort=False)
        # TLS waits for the peer's close_notify (reading and decrypting all the
        # while): the answer gets a moment to leave, then the connection goes.
        transport = me.transport
        if transport is not None:
            self.listener.reactor.callLater(REFUSAL_GRACE, transport.abortConnection)

    def onConnect(self, request: Any) -> str:
        refusal = handshake_refusal(
            list(request.protocols or ()),
            request.origin or None,
            self.listener.websocket,
        )
        if refusal is not None:
            code, reason = refusal
            if self.connection is not None:
                self.connection.handshake_failed(f"WebSocket: {reason}")
            raise ConnectionDeny(code, reason)  # type: ignore[no-untyped-call]
        return SUBPROTOCOL

    def onOpen(self) -> None:
        self._sip_open()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._sip_message(payload)

    def onPing(self, payload: bytes) -> None:
        self._sip_ping(payload, super().onPing)

    def onPong(self, payload: bytes) -> None:
        self._sip_pong(payload)
        super().onPong(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._sip_closed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._sip_connection_lost(reason)


class SipWebSocketClientProtocol(_SipWebSocketMixin, WebSocketClientProtocol):  # type: ignore[misc]
    """A SIP-over-WebSocket connection this socket opened to a peer."""

    log = _AUTOBAHN_LOG

    def __init__(
        self,
        listener: WebSocketListener,
        on_connected: Callable[[StreamConnection], None] | None,
        on_failed: Callable[[Failure], None] | None,
    ) -> None:
        super().__init__()
        self.listener = listener
        self.connection = None
        self.on_connected = on_connected
        self.on_failed = on_failed

    def connectionMade(self) -> None:
        super().connectionMade()
        self._sip_connection_made()

    def dataReceived(self, data: bytes) -> None:
        if self._sip_data(data):
            self._sip_frames(data, super().dataReceived)

    def onConnect(self, response: Any) -> None:
        if response.protocol != SUBPROTOCOL:
            raise ConnectionError(
                f"the server did not accept the sip subprotocol (chose {response.protocol!r})"
            )

    def onOpen(self) -> None:
        self._sip_open()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._sip_message(payload)

    def onPing(self, payload: bytes) -> None:
        self._sip_ping(payload, super().onPing)

    def onPong(self, payload: bytes) -> None:
        self._sip_pong(payload)
        super().onPong(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._sip_closed()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._sip_connection_lost(reason)


# -- the listener ------------------------------------------------------------------


class WebSocketListener(StreamListener):
    """A WS (or, with ``tls``, WSS) SIP socket: a `StreamListener` speaking WebSocket."""

    def __init__(
        self,
        sdef: SocketDef,
        slot: int | None,
        sink: MessageSink,
        *,
        reactor: Any,
        websocket: WebSocketSettings | None = None,
        tls: TLSBinding | None = None,
        limits: LimitSettings | None = None,
        max_message_size: int = 65535,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            sdef,
            slot,
            sink,
            reactor=reactor,
            tls=tls,
            limits=limits,
            max_message_size=max_message_size,
            **kwargs,
        )
        self.websocket = websocket if websocket is not None else WebSocketSettings()
        #: The largest WebSocket message: ``[limits] max_ws_message_size`` (which
        #: defaults to the smaller of the two older keys), else those keys.
        self.ws_message_size = (
            limits.max_ws_message_size
            if limits is not None
            else min(self.websocket.max_message_size, max_message_size)
        )
        self.max_handshake_size = min(MAX_HANDSHAKE_SIZE, self.max_message_size)
        factory: Any = WebSocketServerFactory(  # type: ignore[no-untyped-call]
            server="sipsock", protocols=[SUBPROTOCOL], reactor=reactor
        )
        # Origins are checked by handshake_refusal; autobahn lets every one through.
        # No status page: it shows autobahn's version and redirects anywhere.
        factory.setProtocolOptions(
            allowedOrigins=["*"],
            allowNullOrigin=True,
            webStatus=False,
            **self._protocol_options(),
        )
        self._server_factory = factory

    def protocol_limits(self) -> dict[str, int]:
        """autobahn's frame and message size limits for this socket's connections."""
        message = self.ws_message_size
        return {
            "maxFramePayloadSize": min(self.limits.max_ws_frame_size, message),
            "maxMessagePayloadSize": message,
        }

    def _protocol_options(self) -> dict[str, Any]:
        settings = self.websocket
        return {
            **self.protocol_limits(),
            "autoPingInterval": 0,
            "openHandshakeTimeout": settings.handshake_timeout,
            "closeHandshakeTimeout": 2,
            "failByDrop": False,
        }

    def build_protocol(
        self,
        on_connected: Callable[[StreamConnection], None] | None = None,
        outbound: tuple[str, int] | None = None,
        on_failed: Callable[[Failure], None] | None = None,
    ) -> Protocol:
        """A server protocol for an accepted connection, a client one for ``outbound``."""
        if outbound is None:
            server = SipWebSocketServerProtocol(self)
            server.factory = self._server_factory
            return server
        secure = self.tls is not None
        # Servers that require an Origin (browsers always send one) get this
        # socket's public address.
        origin = (
            f"{'https' if secure else 'http'}://{self.sdef.public_host}:{self.sdef.public_port}"
        )
        factory: Any = WebSocketClientFactory(  # type: ignore[no-untyped-call]
            url=f"{'wss' if secure else 'ws'}://{bracket(outbound[0])}:{outbound[1]}/",
            protocols=[SUBPROTOCOL],
            origin=origin,
            useragent="sipsock",
            reactor=self.reactor,
        )
        factory.setProtocolOptions(**self._protocol_options())
        client = SipWebSocketClientProtocol(self, on_connected, on_failed)
        client.factory = factory
        return client


def open_ws_listener(
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any,
    idle_timeout: float = 180.0,
    max_message_size: int = 65535,
    websocket: WebSocketSettings | None = None,
    tls: TLSBinding | None = None,
    limits: LimitSettings | None = None,
) -> WebSocketListener:
    """Bind and listen a WS socket (WSS with ``tls``) and serve it (raises `ListenError`)."""
    sock = bind_socket(sdef)
    try:
        listener = WebSocketListener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            websocket=websocket,
            tls=tls,
            limits=limits,
        )
        listener.adopt(sock.fileno())
        return listener
    finally:
        sock.close()
