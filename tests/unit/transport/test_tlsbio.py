"""`tlsbio`: the direct OpenSSL calls answer what pyOpenSSL's methods answer, on real TLS.

Each case runs twice on twin connections (the same certificate, the same
client bytes): once through pyOpenSSL's ``bio_write``/``recv``/``send``/
``bio_read``, once through `tlsbio`, and the outcomes are compared: the
plaintext, "nothing more" (`WantReadError` there, None here), the peer's
close_notify, a TLS alert with its reasons, and an exception a callback
left for the next call.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from sipsock.config import TLSDomainSettings
from sipsock.transport import tlsbio
from sipsock.transport.tls import TLSDomains
from tests.tlsfiles import TestPKI

MESSAGE = b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"


class _Twin:
    """A server `SSL.Connection` on memory BIOs, and a stdlib client of it, handshaken."""

    def __init__(self, context: SSL.Context, pki: TestPKI) -> None:
        self.server = SSL.Connection(context, None)
        self.server.set_accept_state()
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = pki.client_context().wrap_bio(
            self.incoming, self.outgoing, server_hostname="localhost"
        )
        for _ in range(20):
            try:
                self.client.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = self.outgoing.read()
            if data:
                self.server.bio_write(data)
            with contextlib.suppress(SSL.WantReadError):
                self.server.do_handshake()
            self.to_client()
            if done:
                break
        assert done
        self.to_client()

    def to_client(self) -> None:
        while True:
            try:
                self.incoming.write(self.server.bio_read(65536))
            except SSL.WantReadError:
                return

    def sent(self) -> bytes:
        return self.outgoing.read()


@pytest.fixture
def twins(tmp_path: Path) -> Callable[[], _Twin]:
    pki = TestPKI(tmp_path)
    files = pki.issue("server", "localhost")
    domains = TLSDomains(
        [TLSDomainSettings(name="d", certificate=files.certificate, private_key=files.private_key)]
    )
    # The domain's own context: its ALPN and SNI callbacks are installed.
    return lambda: _Twin(domains.default_of("*").context, pki)


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("value", call())
    except SSL.WantReadError:
        return ("value", None)
    except SSL.Error as error:
        return (type(error).__name__, error.args)
    except Exception as error:
        return (type(error).__name__, str(error))


def _read_all(read: Callable[[], Any]) -> list[tuple[str, Any]]:
    outcomes = []
    for _ in range(5):
        outcome = _outcome(read)
        outcomes.append(outcome)
        if outcome[0] != "value" or outcome[1] is None:
            break
    return outcomes


def _both(
    twins: Callable[[], _Twin], client_bytes: Callable[[_Twin], bytes]
) -> tuple[list[Any], list[Any]]:
    """What pyOpenSSL's methods, then `tlsbio`, read from the same client bytes."""
    results = []
    for direct in (False, True):
        twin = twins()
        data = client_bytes(twin)
        if direct:
            assert tlsbio.direct_calls(twin.server)
            tlsbio.feed(twin.server, data)
            outcomes = _read_all(functools.partial(tlsbio.read, twin.server))
            drained = _outcome(functools.partial(tlsbio.drain, twin.server))
        else:
            twin.server.bio_write(data)
            outcomes = _read_all(functools.partial(twin.server.recv, tlsbio.READ_SIZE))
            drained = _outcome(functools.partial(twin.server.bio_read, tlsbio.READ_SIZE))
        # Ciphertext differs from twin to twin: whether there is any is compared.
        outcomes.append(drained if drained[0] != "value" else ("value", drained[1] is not None))
        results.append(outcomes)
    return results[0], results[1]


def test_messages_read_the_same_and_nothing_more_is_none(twins: Callable[[], _Twin]) -> None:
    def two_records(twin: _Twin) -> bytes:
        twin.client.write(MESSAGE)
        twin.client.write(MESSAGE * 3)
        return twin.sent()

    by_methods, direct = _both(twins, two_records)
    assert direct == by_methods
    assert direct[:3] == [("value", MESSAGE), ("value", MESSAGE * 3), ("value", None)]
    # Nothing to send after reading application data.
    assert direct[3] == ("value", False)


def test_a_partial_record_is_nothing_yet(twins: Callable[[], _Twin]) -> None:
    def half(twin: _Twin) -> bytes:
        twin.client.write(MESSAGE)
        data = twin.sent()
        return data[: len(data) // 2]

    by_methods, direct = _both(twins, half)
    assert direct == by_methods == [("value", None), ("value", False)]


def test_the_peers_close_notify_is_zero_return_and_the_answer_is_sent(
    twins: Callable[[], _Twin],
) -> None:
    def close(twin: _Twin) -> bytes:
        twin.client.write(MESSAGE)
        with contextlib.suppress(ssl.SSLWantReadError):
            twin.client.unwrap()
        return twin.sent()

    by_methods, direct = _both(twins, close)
    assert direct == by_methods
    assert direct[0] == ("value", MESSAGE)
    assert direct[1][0] == "ZeroReturnError"


def test_a_corrupt_record_fails_with_the_same_reasons(twins: Callable[[], _Twin]) -> None:
    def corrupt(twin: _Twin) -> bytes:
        twin.client.write(MESSAGE)
        data = bytearray(twin.sent())
        data[-3] ^= 0x55
        return bytes(data)

    by_methods, direct = _both(twins, corrupt)
    assert direct == by_methods
    assert direct[0][0] == "Error"
    assert "bad record mac" in str(direct[0][1])
    # The alert the failure made is there to send, both ways.
    assert direct[1] == ("value", True)


@pytest.mark.parametrize("helper_name", ["_verify_helper", "_alpn_select_helper", "_ocsp_helper"])
def test_an_exception_left_by_a_callback_is_raised_by_the_next_read_and_write(
    twins: Callable[[], _Twin], helper_name: str
) -> None:
    for direct in (False, True):
        twin = twins()
        twin.client.write(MESSAGE)
        data = twin.sent()
        context: Any = twin.server.get_context()
        helper = getattr(context, helper_name)
        if helper is None:  # no such callback on this context: as if there were one
            helper = SSL._CallbackExceptionHelper()
            setattr(context, helper_name, helper)
        helper._problems.append(RuntimeError("left by a callback"))
        helper._problems.append(RuntimeError("left again"))
        read: Callable[[], Any]
        write: Callable[[], Any]
        if direct:
            tlsbio.feed(twin.server, data)
            read = functools.partial(tlsbio.read, twin.server)
            write = functools.partial(tlsbio.write, twin.server, MESSAGE)
        else:
            twin.server.bio_write(data)
            read = functools.partial(twin.server.recv, tlsbio.READ_SIZE)
            write = functools.partial(twin.server.send, MESSAGE)
        assert _outcome(read) == ("RuntimeError", "left by a callback")
        assert _outcome(write) == ("RuntimeError", "left again")
        # The record read with the first problem is gone, as with pyOpenSSL.
        assert _outcome(read) == ("value", None)


def test_writes_are_records_the_client_reads(twins: Callable[[], _Twin]) -> None:
    twin = twins()
    assert tlsbio.write(twin.server, MESSAGE) == len(MESSAGE)
    assert tlsbio.write(twin.server, bytearray(MESSAGE)) == len(MESSAGE)
    ciphertext = tlsbio.drain(twin.server)
    assert ciphertext is not None
    assert tlsbio.drain(twin.server) is None
    twin.incoming.write(ciphertext)
    assert twin.client.read(65536) + twin.client.read(65536) == MESSAGE * 2


def test_only_a_pyopenssl_connection_on_memory_bios_is_driven_directly(
    twins: Callable[[], _Twin],
) -> None:
    twin = twins()
    assert tlsbio.AVAILABLE
    assert tlsbio.direct_calls(twin.server)
    assert not tlsbio.direct_calls(object())
    assert not tlsbio.direct_calls(None)
    left, right = socket.socketpair()
    try:
        on_socket = SSL.Connection(twin.server.get_context(), left)
        assert not tlsbio.direct_calls(on_socket)
    finally:
        left.close()
        right.close()
