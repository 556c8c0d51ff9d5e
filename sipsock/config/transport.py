"""``[websocket]`` and ``[limits]``: what the transports accept from a peer.

The ``[limits]`` message sizes default to, and may not exceed, ``[core]
max_message_size`` (WebSocket: also ``[websocket] max_message_size``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sipsock.config.reader import Reader

_ORIGIN_RE: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\*|(\*\.)?[a-z0-9.-]+|\[[0-9a-f:.]+\])"
    r"(:(?P<port>[0-9]{1,5}|\*))?"
)


@dataclass(frozen=True)
class WebSocketSettings:
    """``[websocket]``: WS and WSS sockets (RFC 7118).

    ``allowed_origins`` holds ``"*"`` or ``scheme://host[:port]`` patterns
    (``*.`` before the host and ``*`` as the port are wildcards);
    ``ping_interval`` 0 turns the keep-alive pings off.
    """

    require_origin: bool = True
    allowed_origins: tuple[str, ...] = ("*",)
    max_message_size: int = 65535
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    handshake_timeout: float = 10.0


@dataclass(frozen=True)
class LimitSettings:
    """``[limits]``: what one peer may cost (README "Limits").

    Message sizes are per transport: UDP, stream (TCP and TLS) and WebSocket
    (WS and WSS: the whole message and each frame); each defaults to
    ``[core] max_message_size`` (WebSocket: also ``[websocket]
    max_message_size``) and may not exceed it. Connection caps count the
    accepted connections of one stream socket, in all and from one remote
    IP. ``header_timeout`` cuts a stream connection that has not sent a whole
    first message, or not finished a header section it started, within that
    many seconds. ``max_pending_send`` is the output (bytes) a connection
    may have queued before it is aborted; ``max_outbound_connections`` the
    connections one socket may open; ``log_interval`` the seconds between two
    log lines about the same limit of the same socket.
    """

    max_udp_message_size: int = 65535
    max_stream_message_size: int = 65535
    max_ws_message_size: int = 65535
    max_ws_frame_size: int = 65535
    max_connections_per_socket: int = 4096
    max_connections_per_ip: int = 256
    header_timeout: float = 10.0
    max_pending_send: int = 1048576
    max_outbound_connections: int = 1024
    log_interval: float = 60.0

    def udp_options(self) -> dict[str, Any]:
        """The keyword arguments of a UDP listener (`sipsock.transport.udp.UdpListener`)."""
        return {"max_message_size": self.max_udp_message_size, "log_interval": self.log_interval}


def read_websocket(reader: Reader, data: Mapping[str, Any]) -> WebSocketSettings:
    sec = reader.section(data, "websocket", WebSocketSettings)
    origins: list[str] = []
    for index, item in enumerate(sec.get("allowed_origins", list)):
        key = f"allowed_origins[{index}]"
        if not isinstance(item, str):
            sec.fail(key, f"must be a string, not {item!r}")
        origin = item.strip().lower().rstrip("/")
        if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
            sec.fail(
                key,
                f'{item[:70]!r} is not "*" nor scheme://host[:port] (e.g. https://phone.example.com)',
            )
        origins.append(origin)
    return WebSocketSettings(
        require_origin=sec.get("require_origin", bool),
        allowed_origins=tuple(origins),
        max_message_size=sec.integer("max_message_size", 1024, 65535),
        ping_interval=sec.number("ping_interval", 0.0, 3600.0),
        ping_timeout=sec.number("ping_timeout", 1.0, 600.0),
        handshake_timeout=sec.number("handshake_timeout", 1.0, 600.0),
    )


def read_limits(
    reader: Reader, data: Mapping[str, Any], largest: int, websocket: WebSocketSettings
) -> LimitSettings:
    """``[limits]``; message sizes default to, and may not exceed, ``largest``.

    ``largest`` is ``[core] max_message_size``; the WebSocket message size
    defaults to the smaller of it and ``[websocket] max_message_size``.
    """
    sec = reader.section(data, "limits", LimitSettings)
    ws_default = min(largest, websocket.max_message_size)
    sizes: dict[str, int] = {}
    for key, default in (
        ("max_udp_message_size", largest),
        ("max_stream_message_size", largest),
        ("max_ws_message_size", ws_default),
    ):
        sizes[key] = sec.integer(key, 1024, 65535, default=default)
        if sizes[key] > largest:
            sec.fail(
                key,
                f"{sizes[key]} is above [core] max_message_size ({largest}), the largest "
                "message parsed: raise that too",
            )
    ws_size = sizes["max_ws_message_size"]
    frame = sec.integer("max_ws_frame_size", 125, 65535, default=ws_size)
    if frame > ws_size:
        sec.fail(
            "max_ws_frame_size",
            f"{frame} is above max_ws_message_size ({ws_size}): a frame is part of a message",
        )
    per_socket = sec.integer("max_connections_per_socket", 1, 1000000)
    per_ip = sec.integer("max_connections_per_ip", 1, 1000000)
    if per_ip > per_socket:
        sec.fail(
            "max_connections_per_ip",
            f"{per_ip} is above max_connections_per_socket ({per_socket})",
        )
    return LimitSettings(
        **sizes,
        max_ws_frame_size=frame,
        max_connections_per_socket=per_socket,
        max_connections_per_ip=per_ip,
        header_timeout=sec.number("header_timeout", 0.1, 3600.0),
        max_pending_send=sec.integer("max_pending_send", 65536, 1 << 30),
        max_outbound_connections=sec.integer("max_outbound_connections", 1, 1000000),
        log_interval=sec.number("log_interval", 1.0, 86400.0),
    )
