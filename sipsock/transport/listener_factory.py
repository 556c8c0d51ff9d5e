"""`open_listener`: the listener factory, from a socket definition to a running listener.

It picks the transport by protocol (UDP, TCP/TLS, WS/WSS), binds the socket
and starts serving it; a socket that cannot be opened raises `ListenError`.
The composition root hands it to the registry as its opener. Each concrete
transport is imported when a socket of its kind is first opened, so that
importing the factory (or `sipsock.transport`) loads none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sipsock.limits import DEFAULT_LOG_INTERVAL
from sipsock.seams import Listener, ListenError, MessageSink
from sipsock.sockdef import SocketDef

if TYPE_CHECKING:
    from sipsock.config import LimitSettings, WebSocketSettings
    from sipsock.transport.tls import TLSDomains


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
    limits: LimitSettings | None = None,
) -> Listener:
    """Bind ``sdef`` and start serving it; returns the running listener.

    Binding is synchronous: a socket that cannot be opened raises
    `ListenError` before anything reaches the reactor. UDP sockets are created
    here and adopted by the reactor; stream sockets are created, bound and put
    to listen here, then adopted. TLS and WSS sockets take their certificates
    from ``tls`` (no domain serving the socket is a `ListenError` saying so);
    WS and WSS sockets follow ``websocket`` (origins, keep-alive). ``limits``
    (`sipsock.config.LimitSettings`: message sizes per transport, connection
    caps, header timeout, pending-send buffer, outbound pool) default to
    `LimitSettings()` with sizes capped by ``max_message_size``.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if sdef.proto == "udp":
        from sipsock.transport.udp import open_udp_listener

        udp_size = max_message_size if limits is None else limits.max_udp_message_size
        return open_udp_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            max_message_size=min(udp_size, max_message_size),
            log_interval=DEFAULT_LOG_INTERVAL if limits is None else limits.log_interval,
        )
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
            limits=limits,
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
            limits=limits,
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
