# mypy: disable-error-code="no-untyped-call"
"""The TLS layer of TLS and WSS sockets: one encrypted write per read, straight to the socket.

The server side is sipsock's TLS layer on a real TCP transport over a socket
pair; the client is the standard library's TLS on memory buffers, driven by
hand (no reactor runs: anything the server leaves queued for the reactor's
next turn never reaches the client).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from sipsock.config import LimitSettings, TLSDomainSettings
from sipsock.seams import Origin
from sipsock.sockdef import parse_row
from sipsock.transport import tlsbio
from sipsock.transport.backpressure import OutputGauge
from sipsock.transport.stream import StreamListener
from sipsock.transport.tls import TLSDomains
from sipsock.transport.tlswrite import ReadBatchingTLSProtocol
from tests.tlsfiles import TestPKI
from tests.unit.transport.streamkit import BARE_MESSAGE, AnsweringSink

ANSWER = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


class _Answering(AnsweringSink):
    """Answers every message with `ANSWER`."""

    def message_received(self, data: bytes, origin: Origin) -> None:
        super().message_received(data, origin)
        origin.reply(ANSWER)


class _Pair:
    """A sipsock TLS connection over a socket pair, and a memory-BIO client of it."""

    def __init__(self, tmp_path: Path) -> None:
        from twisted.internet import reactor
        from twisted.internet.tcp import Server

        pki = TestPKI(tmp_path)
        files = pki.issue("server", "localhost")
        domains = TLSDomains(
            [
                TLSDomainSettings(
                    name="d", certificate=files.certificate, private_key=files.private_key
                )
            ]
        )
        sdef = parse_row(1, "tls:127.0.0.1:5061")
        self.sink = _Answering()
        self.listener = StreamListener(
            sdef,
            1,
            self.sink,
            reactor=reactor,
            tls=domains.context_for(sdef),
            limits=LimitSettings(header_timeout=3600),
        )
        factory = self.listener.wrap_factory(Factory.forProtocol(self.listener.build_protocol))
        self.tls: Any = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 40000))
        assert isinstance(self.tls, ReadBatchingTLSProtocol)
        ours, self.theirs = socket.socketpair()
        ours.setblocking(False)
        self.theirs.setblocking(False)
        self.tcp = Server(ours, self.tls, ("192.0.2.9", 40000), None, 1, reactor)  # type: ignore[arg-type]
        self.tcp.getPeer = lambda: IPv4Address("TCP", "192.0.2.9", 40000)  # type: ignore[method-assign]
        self.calls: list[str] = []
        send, write = self.tcp.writeSomeData, self.tcp.write

        def to_socket(data: bytes) -> Any:
            self.calls.append("socket")
            return send(data)

        def to_queue(data: bytes) -> None:
            self.calls.append("queue")
            write(data)

        self.tcp.writeSomeData, self.tcp.write = to_socket, to_queue  # type: ignore[method-assign]
        self.tls.makeConnection(self.tcp)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = pki.client_context().wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        for _ in range(20):
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.pump()
        self.pump()
        self.calls.clear()

    def pump(self) -> None:
        """Client bytes to the server in one read; what reached its socket to the client."""
        data = self.outgoing.read()
        if data:
            self.tls.dataReceived(data)
        self.receive()

    def receive(self) -> None:
        while True:
            try:
                chunk = self.theirs.recv(65536)
            except BlockingIOError:
                return
            if not chunk:
                self.incoming.write_eof()
                return
            self.incoming.write(chunk)

    def read_plain(self) -> bytes:
        self.receive()
        plain = b""
        while True:
            try:
                chunk = self.client.read(65536)
            except ssl.SSLWantReadError:
                return plain
            if not chunk:
                return plain
            plain += chunk

    def close(self) -> None:
        self.tcp.connectionLost(Failure(ConnectionDone()))
        self.theirs.close()


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    made = _Pair(tmp_path)
    yield made
    made.close()


def test_the_answers_to_one_read_leave_in_one_encrypted_write_straight_to_the_socket(
    pair: _Pair,
) -> None:
    # Two messages in two TLS records, read by the server at once.
    pair.client.write(BARE_MESSAGE)
    pair.client.write(BARE_MESSAGE)
    pair.pump()
    assert len(pair.sink.messages) == 2
    assert pair.calls == ["socket"]
    assert pair.read_plain() == ANSWER + ANSWER


def test_a_write_outside_a_read_leaves_at_once(pair: _Pair) -> None:
    connection = next(iter(pair.listener.connections.values()))
    connection.reply(ANSWER)
    assert pair.calls == ["socket"]
    assert pair.read_plain() == ANSWER


def test_a_close_during_a_read_sends_the_answers_before_the_close_notify(pair: _Pair) -> None:
    # A good message, then bytes that are not SIP: the connection closes on
    # the framing error, after the good message's answer.
    pair.client.write(BARE_MESSAGE + b"NOT SIP AT ALL\r\n\r\n")
    pair.pump()
    assert pair.calls == ["socket", "socket"]  # the answer, then the close_notify
    assert pair.read_plain() == ANSWER
    assert pair.client.read(10) == b""  # closed (TLS close_notify), not waiting for more


def test_held_plaintext_counts_as_pending_output() -> None:
    class Tcp:
        dataBuffer = b"x" * 10
        offset = 4
        _tempDataLen = 3

    class Tls:
        transport = Tcp()
        _appSendBuffer: list[bytes] = []
        _held_plaintext = [b"abc", b"de"]

    assert OutputGauge(Tls()).read() == (5 + 6 + 3, 6)


def test_a_read_and_its_answer_make_no_pyopenssl_call_and_raise_no_want_read(
    pair: _Pair,
) -> None:
    # The OpenSSL calls of a read go through tlsbio: no pyOpenSSL method, whose
    # "nothing more to read" and "nothing to send" are WantReadError exceptions.
    made: list[str] = []
    connection = pair.tls._tlsConnection
    for name in ("recv", "read", "send", "write", "bio_read", "bio_write"):
        method = getattr(connection, name)

        def called(*args: Any, _name: str = name, _method: Any = method) -> Any:
            made.append(_name)
            return _method(*args)

        setattr(connection, name, called)
    pair.client.write(BARE_MESSAGE)
    pair.pump()
    pair.client.write(BARE_MESSAGE)
    pair.pump()
    assert len(pair.sink.messages) == 2
    assert pair.read_plain() == ANSWER + ANSWER
    assert made == []


def test_a_long_write_leaves_in_records_the_client_reads_whole(pair: _Pair) -> None:
    connection = next(iter(pair.listener.connections.values()))
    long = b"SIP/2.0 200 OK\r\nX: " + b"x" * 40000 + b"\r\nContent-Length: 0\r\n\r\n"
    connection.reply(long)
    received = b""
    for _ in range(10):
        received += pair.read_plain()
        if len(received) >= len(long):
            break
    assert received == long


def test_the_peers_close_notify_is_answered_with_ours(pair: _Pair) -> None:
    pair.client.write(BARE_MESSAGE)
    pair.pump()
    assert pair.read_plain() == ANSWER
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.unwrap()
    pair.pump()
    pair.client.unwrap()  # the server's close_notify arrived: no error, no waiting


def test_a_corrupt_record_closes_the_connection_naming_the_tls_reason(tmp_path: Path) -> None:
    made = _Pair(tmp_path)
    try:
        made.client.write(BARE_MESSAGE)
        data = bytearray(made.outgoing.read())
        data[-3] ^= 0x55
        with capturedLogs() as events:
            made.tls.dataReceived(bytes(data))
            made.tcp.connectionLost(Failure(ConnectionDone()))
        assert made.sink.messages == []
        text = " ".join(formatEvent(event) for event in events)
        assert "closed: TLS error: " in text
        assert "bad record mac" in text
        # The server's alert reached the client.
        made.receive()
        with pytest.raises(ssl.SSLError):
            made.client.read(100)
    finally:
        made.theirs.close()


def test_a_read_with_answers_takes_the_ciphertext_out_of_openssl_once(
    pair: _Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answers' write takes along whatever the read made OpenSSL send: no
    # separate (empty) flush after the read.
    drained: list[bool] = []
    drain = tlsbio.drain

    def counted(connection: Any) -> bytes | None:
        data = drain(connection)
        drained.append(data is not None)
        return data

    monkeypatch.setattr(tlsbio, "drain", counted)
    pair.client.write(BARE_MESSAGE)
    pair.pump()
    assert pair.read_plain() == ANSWER
    assert drained == [True]
    # A read without an answer (a partial message) still looks once.
    pair.client.write(BARE_MESSAGE[:10])
    pair.pump()
    assert drained == [True, False]
