"""The rules of SIP over WebSocket (RFC 7118), pure: origins, handshakes, frames.

`sipsock.transport.ws` does the I/O with autobahn and asks these functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Final

from sipsock.config import WebSocketSettings

#: The WebSocket subprotocol of SIP (RFC 7118 section 4).
SUBPROTOCOL: Final = "sip"
#: Status code of a normal close (the only one below 3000 autobahn lets us send).
CLOSE_NORMAL: Final = 1000
#: Status code autobahn closes with when a frame or message is above its limit.
CLOSE_TOO_BIG: Final = 1009
#: Largest opening handshake (request or response head), as the TCP header
#: section limit: a peer may not push more before its blank line.
MAX_HANDSHAKE_SIZE: Final = 16384
#: Status of a refused oversized handshake: Request Header Fields Too Large.
HANDSHAKE_TOO_LARGE: Final = 431
#: Default ports of the origin schemes, left out when comparing origins.
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_ORIGIN_RE: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[^\]]*\]|[^:/?#]*)(?::(?P<port>[0-9]+|\*))?/?"
)


def split_origin(origin: str) -> tuple[str, str, str] | None:
    """``scheme://host[:port]`` as (scheme, host, port), lower-case, default port filled in.

    None when the text is not an origin of that shape.
    """
    match = _ORIGIN_RE.fullmatch(origin.strip().lower())
    if match is None or not match["host"]:
        return None
    scheme = match["scheme"]
    port = match["port"] or str(_DEFAULT_PORTS.get(scheme, ""))
    return scheme, match["host"], port


def origin_allowed(origin: str, allowed: Sequence[str]) -> bool:
    """Whether an ``Origin`` header value matches an ``allowed_origins`` entry.

    ``"*"`` allows any origin; ``https://phone.example.com`` allows that
    scheme, host and (default) port; ``*.`` before the host allows one or
    more labels in front of the rest; ``:*`` allows any port.
    """
    if "*" in allowed:
        return True
    parts = split_origin(origin)
    if parts is None:
        return False
    scheme, host, port = parts
    for entry in allowed:
        wanted = split_origin(entry)
        if wanted is None:
            continue
        w_scheme, w_host, w_port = wanted
        if w_scheme != scheme or w_port not in ("*", port):
            continue
        if w_host == host or (w_host.startswith("*.") and host.endswith(w_host[1:])):
            return True
    return False


def handshake_refusal(
    protocols: Sequence[str], origin: str | None, settings: WebSocketSettings
) -> tuple[int, str] | None:
    """Why an opening handshake is refused, as (HTTP status, reason); None to accept.

    The client must offer the ``sip`` subprotocol; ``Origin`` is checked
    against the allowed origins when present and required when
    ``require_origin`` is set.
    """
    if SUBPROTOCOL not in protocols:
        offered = ", ".join(protocols) if protocols else "none"
        return (
            HTTPStatus.BAD_REQUEST.value,
            f"the sip WebSocket subprotocol (RFC 7118) is required (offered: {offered})",
        )
    if not origin:
        if settings.require_origin:
            return HTTPStatus.FORBIDDEN.value, "an Origin header is required"
        return None
    if not origin_allowed(origin, settings.allowed_origins):
        return HTTPStatus.FORBIDDEN.value, f"origin {origin[:100]!r} is not allowed"
    return None


def handshake_overflows(buffered: bytes, data: bytes, limit: int) -> bool:
    """Whether an opening handshake passes ``limit`` bytes before its blank line.

    ``buffered`` is what is held of it, ``data`` what just arrived; frames
    sent right behind a short handshake do not count.
    """
    if len(buffered) + len(data) <= limit:
        return False
    head = (buffered + data[: limit + 4])[: limit + 4]
    return b"\r\n\r\n" not in head


def is_text(data: bytes) -> bool:
    """Whether a message can go in a text frame (valid UTF-8)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- frames ------------------------------------------------------------------------
#
# The common frame of SIP over WebSocket, read and written without autobahn:
# one whole message in one final text or binary frame, no extension bits.
# Every other frame (control frames, fragments, frames split across reads,
# anything autobahn would refuse) is left to autobahn, which reads it and
# answers faults with its close codes.


def unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated four-byte ``mask`` (RFC 6455 5.3)."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def read_frame(
    buffer: bytes, start: int, masked: bool, limit: int
) -> tuple[bytes, bool, int] | None:
    """The whole data message whose frame starts at ``start``: (payload, binary, end).

    None when the frame is not one autobahn would deliver as a message at
    once: not a final text or binary frame with no extension bits, masked
    other than ``masked`` says, empty, longer than ``limit`` bytes (or
    than 65535), its length not in the shortest form, not all in
    ``buffer``, or a text frame that is not valid UTF-8. ``end`` is where
    the next frame starts.
    """
    available = len(buffer) - start
    if available < 2:
        return None
    first = buffer[start]
    if first == 0x81:
        binary = False
    elif first == 0x82:
        binary = True
    else:
        return None
    second = buffer[start + 1]
    if (second >= 0x80) is not masked:
        return None
    length = second & 0x7F
    offset = start + 2
    if length == 126:
        if available < 4:
            return None
        length = (buffer[offset] << 8) | buffer[offset + 1]
        if length < 126:
            return None
        offset += 2
    elif length == 127:
        return None
    if length == 0 or length > limit:
        return None
    if masked:
        end = offset + 4 + length
        if len(buffer) < end:
            return None
        payload = unmask(buffer[offset + 4 : end], buffer[offset : offset + 4])
    else:
        end = offset + length
        if len(buffer) < end:
            return None
        payload = buffer[offset:end]
    if not binary and not is_text(payload):
        return None
    return payload, binary, end


def server_frame(payload: bytes) -> bytes:
    """``payload`` in one final, unmasked frame: text when it is UTF-8, binary otherwise."""
    size = len(payload)
    opcode = 0x81 if is_text(payload) else 0x82
    if size < 126:
        head = bytes((opcode, size))
    elif size < 65536:
        head = bytes((opcode, 126, size >> 8, size & 0xFF))
    else:
        head = bytes((opcode, 127)) + size.to_bytes(8, "big")
    return head + payload
