"""A minimal blocking telnet client: answers option negotiation, types lines, reads output."""

from __future__ import annotations

import socket
import time

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class TelnetClient:
    """One telnet connection that refuses every option it is asked to do and accepts
    every option the server offers (echo, suppress-go-ahead)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.text = b""
        self._pending = b""

    def _feed(self, data: bytes) -> None:
        data = self._pending + data
        self._pending = b""
        i = 0
        while i < len(data):
            byte = data[i]
            if byte != IAC:
                self.text += bytes([byte])
                i += 1
                continue
            if i + 1 >= len(data):
                self._pending = data[i:]
                return
            command = data[i + 1]
            if command == IAC:
                self.text += bytes([IAC])
                i += 2
            elif command in (DO, DONT, WILL, WONT):
                if i + 2 >= len(data):
                    self._pending = data[i:]
                    return
                option = data[i + 2]
                answer = {DO: WONT, DONT: WONT, WILL: DO, WONT: DONT}[command]
                self.sock.sendall(bytes([IAC, answer, option]))
                i += 3
            elif command == SB:
                end = data.find(bytes([IAC, SE]), i)
                if end < 0:
                    self._pending = data[i:]
                    return
                i = end + 2
            else:
                i += 2

    def read_until(self, token: str, timeout: float = 10.0) -> str:
        """Read until ``token`` shows in the text (negotiation removed); the text so far."""
        deadline = time.monotonic() + timeout
        while token.encode() not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{token!r} not received; got {self.text[-500:]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError(f"closed before {token!r}; got {self.text[-500:]!r}")
            self._feed(chunk)
        return self.text.decode(errors="replace")

    def type_line(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def close(self) -> None:
        self.sock.close()
