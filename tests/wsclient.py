"""SIP-over-WebSocket clients for tests: the `websockets` library, and a raw one for bad frames.

Both are synchronous (blocking sockets with timeouts): the daemon tests call
them directly, the transport tests run them in a thread (`deferToThread`).
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct

from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.sip_probe import options_request, status_of

DEFAULT_ORIGIN = "https://phone.example.com"


def ws_connect(
    port: int,
    *,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = "localhost",
    subprotocols: tuple[str, ...] | None = ("sip",),
    origin: str | None = DEFAULT_ORIGIN,
    timeout: float = 5.0,
) -> ClientConnection:
    """Open a WebSocket (WSS with ``tls``) offering ``subprotocols``; raises when refused."""
    scheme = "wss" if tls is not None else "ws"
    return connect(
        f"{scheme}://{host}:{port}/",
        ssl=tls,
        server_hostname=server_hostname if tls is not None else None,
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        origin=Origin(origin) if origin else None,
        proxy=None,
        compression=None,
        open_timeout=timeout,
        close_timeout=timeout,
        ping_interval=None,
    )


def ws_options(
    ws: ClientConnection, port: int, *, binary: bool = False, timeout: float = 5.0
) -> tuple[int | None, str]:
    """Send one OPTIONS in one message; returns (status, whole answer as text)."""
    transport = "WSS" if isinstance(ws.socket, ssl.SSLSocket) else "WS"
    request = options_request("127.0.0.1", port, ws.socket.getsockname()[1], transport)
    ws.send(request if binary else request.decode())
    answer = ws.recv(timeout=timeout)
    data = answer if isinstance(answer, bytes) else answer.encode()
    return status_of(data), data.decode(errors="replace")


class RawWebSocket:
    """A hand-made WebSocket client that can send what a good client never would."""

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        protocol: str | None = "sip",
        origin: str | None = DEFAULT_ORIGIN,
        timeout: float = 5.0,
    ) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock: socket.socket = (
            tls.wrap_socket(raw, server_hostname="localhost") if tls is not None else raw
        )
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET / HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.response = head.decode(errors="replace")

    @property
    def status(self) -> int:
        return int(self.response.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        for line in self.response.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """One masked client frame."""
        first = (0x80 if fin else 0) | opcode
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next server frame (opcode, payload); None when the connection closed."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            return None
        self.buffer = data[offset + length :]
        return opcode, data[offset : offset + length]

    def close_code(self) -> int | None:
        """Read until the server's close frame; its status code (None if it just hung up)."""
        while True:
            frame = self.read_frame()
            if frame is None:
                return None
            opcode, payload = frame
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True once the server closed the TCP connection (within ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def options_over_raw(ws: RawWebSocket, port: int) -> int | None:
    """An OPTIONS as one text frame on a raw client; the status of the answer."""
    ws.send_frame(0x1, options_request("127.0.0.1", port, ws.sock.getsockname()[1], "WS"))
    while True:
        frame = ws.read_frame()
        if frame is None:
            return None
        opcode, payload = frame
        if opcode in (0x1, 0x2):
            return status_of(payload)
