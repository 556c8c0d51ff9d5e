"""Tiny SIP probes for checks between SIPp runs: is this socket answering?"""

from __future__ import annotations

import itertools
import socket
import uuid

_cseq = itertools.count(1)


def options_request(host: str, port: int, local_port: int, transport: str = "UDP") -> bytes:
    branch = f"z9hG4bK{uuid.uuid4().hex}"
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@probe\r\n"
        f"CSeq: {next(_cseq)} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> int | None:
    first = data.split(b"\r\n", 1)[0].split()
    if len(first) >= 2 and first[0] == b"SIP/2.0" and first[1].isdigit():
        return int(first[1])
    return None


def options_udp(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bytes | None:
    """Send one OPTIONS over UDP; the response bytes, or None when nothing came back."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((host, 0))
        sock.sendto(options_request(host, port, sock.getsockname()[1]), (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        return data


class TcpClient:
    """One persistent SIP-over-TCP connection."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def options(self) -> int | None:
        local = self.sock.getsockname()[1]
        self.sock.sendall(options_request(self.host, self.port, local, "TCP"))
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65535)
            if not chunk:
                return None
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip())
        self.buffer = rest[length:]
        return status_of(head)

    def close(self) -> None:
        self.sock.close()


def tcp_answers_options(port: int) -> bool:
    """Whether a new TCP connection to ``port`` gets 200 to an OPTIONS (False on a socket error)."""
    try:
        probe = TcpClient(port, timeout=0.5)
    except OSError:
        return False
    try:
        return probe.options() == 200
    except OSError:
        return False
    finally:
        probe.close()


def port_is_free(port: int, *, udp: bool, host: str = "127.0.0.1") -> bool:
    """True when nobody (in any process) holds the port: we can bind it ourselves."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        if not udp:
            # Connections closed by the daemon linger in TIME_WAIT; SO_REUSEADDR
            # ignores them but still fails while anything listens on the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
