"""The stateless proxy from TLS and WS (in a stream worker) to UDP (a UDP worker), and back.

The request leaves a stream worker through the UDP socket (via the control
process); the callee's answer reaches a UDP worker, whose proxy sends it
back through the stream socket: the control process hands it to the stream
worker holding the caller's connection.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.sip_probe import status_of
from tests.tables import SocketTable
from tests.tlsfiles import TestPKI, domain_toml, tls_connect
from tests.wsclient import ws_connect


def invite(transport: str, port: int, local_port: int) -> bytes:
    call = uuid.uuid4().hex
    return (
        f"INVITE sip:svc@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{call};rport\r\n"
        f"From: <sip:caller@127.0.0.1>;tag={call[:8]}\r\n"
        f"To: <sip:svc@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call}@caller\r\n"
        "CSeq: 1 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answer_one(callee: socket.socket) -> bytes:
    """Receive one request on the UDP callee and answer it 200 (Vias copied); the request."""
    data, source = callee.recvfrom(65535)
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    kept = [
        line
        for line in head[1:]
        if line.split(b":", 1)[0].strip().lower() in (b"via", b"from", b"call-id", b"cseq")
    ]
    to = next(line for line in head if line.lower().startswith(b"to:"))
    response = b"\r\n".join(
        [b"SIP/2.0 200 OK", *kept, to + b";tag=callee", b"Content-Length: 0", b"", b""]
    )
    callee.sendto(response, source)
    return data


def test_tls_and_ws_callers_reach_a_udp_callee_and_get_its_answer_on_their_connection(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    pki = TestPKI(tmp_path / "pki")
    files = pki.issue("server", "localhost")
    (tmp_path / "var").mkdir(exist_ok=True)
    table = SocketTable(sqlite_url)
    table.init()
    tls_port, ws_port, udp_port = free_port(), free_port(), free_port()
    table.insert(f"tls:127.0.0.1:{tls_port}", tag="a")
    table.insert(f"ws:127.0.0.1:{ws_port}", tag="w")
    table.insert(f"udp:127.0.0.1:{udp_port}", tag="b")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as callee:
        callee.bind(("127.0.0.1", 0))
        callee.settimeout(10)
        destination = f"sip:127.0.0.1:{callee.getsockname()[1]}"
        routes = "".join(
            f'[[proxy.route]]\nin_tag = "{tag}"\ndestination = "{destination}"\nout_tag = "b"\n'
            for tag in ("a", "w")
        )
        daemon = daemon_factory(
            sqlite_url,
            '[core]\napplication = "sipsock.apps:StatelessProxy"\n\n'
            + domain_toml("main", files)
            + "[proxy]\n"
            + routes,
        )
        assert all(e.get("error") is None for e in daemon.mi("sockets_list")), daemon.log()

        # TLS -> UDP, 10 requests on one connection (accepted by one stream worker).
        with tls_connect(tls_port, pki.client_context()) as caller:
            caller.settimeout(10)
            for _ in range(10):
                caller.sendall(invite("TLS", tls_port, caller.getsockname()[1]))
                forwarded = answer_one(callee)
                assert b"Via: SIP/2.0/UDP 127.0.0.1:" in forwarded
                answer = b""
                while b"\r\n\r\n" not in answer:
                    chunk = caller.recv(65535)
                    assert chunk, daemon.log()[-2000:]
                    answer += chunk
                assert status_of(answer) == 200, answer

        # WS -> UDP, on several connections (spread over the stream workers).
        for _ in range(6):
            with ws_connect(ws_port) as ws:
                ws.send(invite("WS", ws_port, ws.socket.getsockname()[1]).decode())
                answer_one(callee)
                reply = ws.recv(timeout=10)
                data = reply if isinstance(reply, bytes) else reply.encode()
                assert status_of(data) == 200, data
