# mypy: disable-error-code="no-untyped-call"
"""TLS sockets on real loopback connections, with certificates made by trustme.

Clients are Twisted's own TLS (TLSMemoryBIOProtocol), so the handshake,
SNI and client certificates go through the same OpenSSL binding the server
uses, over real sockets.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet import reactor as _reactor
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from sipsock.apps import Dispatcher
from sipsock.config import TLSDomainSettings
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Listener, ListenError, open_listener
from sipsock.transport.tls import TLSDomains
from tests.integration.transport.test_transport_loopback import (
    Client,
    Recorder,
    options,
)
from tests.net import free_port
from tests.polling import wait_until
from tests.tlsfiles import CertFiles, TestPKI

reactor: Any = _reactor


@implementer(IHandshakeListener)
class TlsClient(Client):
    """A TLS client that remembers the server certificate once the handshake is done.

    TLSMemoryBIOProtocol calls ``handshakeCompleted`` on protocols providing
    IHandshakeListener.
    """

    def __init__(self) -> None:
        super().__init__()
        self.handshake: Deferred[None] = Deferred()
        self.peer_cn: str | None = None

    def handshakeCompleted(self) -> None:
        assert self.transport is not None
        peer = self.transport.getPeerCertificate()  # type: ignore[attr-defined]
        cert = peer.to_cryptography()
        self.peer_cn = str(cert.subject.get_attributes_for_oid(x509.OID_COMMON_NAME)[0].value)
        self.handshake.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.handshake.called:
            self.handshake.errback(reason)
        super().connectionLost(reason)


def client_options(
    pki: TestPKI,
    server_name: str = "localhost",
    client: CertFiles | None = None,
    highest: Any = None,
) -> Any:
    """Twisted client TLS options trusting the test CA, built from cryptography objects.

    ``highest`` caps the protocol version the client offers (a `ssl.TLSVersion`).
    """
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    trust = ssl.trustRootFromCertificates([ssl.Certificate(crypto.X509.from_cryptography(ca))])
    extra: dict[str, Any] = {}
    if highest is not None:
        extra["lowerMaximumSecurityTo"] = highest
    if client is not None:
        extra["certificate"] = x509.load_pem_x509_certificates(client.certificate.read_bytes())[0]
        extra["privateKey"] = serialization.load_pem_private_key(
            client.private_key.read_bytes(), password=None
        )
    return ssl.optionsForClientTLS(server_name, trustRoot=trust, extraCertificateOptions=extra)


async def tls_connect(
    port: int,
    pki: TestPKI,
    server_name: str = "localhost",
    client: CertFiles | None = None,
    highest: Any = None,
) -> TlsClient:
    """Connect and finish the handshake (raises when the server refuses it)."""
    protocol = TlsClient()
    options = client_options(pki, server_name, client, highest)
    endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, options, timeout=5)
    await connectProtocol(endpoint, protocol)
    await protocol.handshake
    return protocol


async def refused(
    port: int, pki: TestPKI, server_name: str = "localhost", client: CertFiles | None = None
) -> None:
    """The server refuses the handshake: fails it (TLS 1.2), or closes right after (TLS 1.3)."""
    try:
        protocol = await tls_connect(port, pki, server_name, client)
    except Exception:
        return
    assert protocol.transport is not None
    protocol.transport.write(options(port, "refused", transport="TLS"))
    await protocol.lost
    assert protocol.count() == 0


async def ask(client: Client, port: int, call: str) -> bytes:
    """Send an OPTIONS and wait for its answer; returns everything received so far."""
    assert client.transport is not None
    before = client.count()
    client.transport.write(options(port, call, transport="TLS"))
    await wait_until(lambda: client.count() == before + 1)
    return client.received


async def close(client: Client) -> None:
    assert client.transport is not None
    client.transport.loseConnection()
    await client.lost


@dataclass
class TlsSockets:
    """TLS domains from real files and the listeners opened on them."""

    pki: TestPKI
    recorder: Recorder = field(default_factory=Recorder)
    listeners: list[Listener] = field(default_factory=list)
    domains: TLSDomains | None = None

    def load(self, *settings: TLSDomainSettings) -> TLSDomains:
        self.domains = TLSDomains(settings)
        return self.domains

    def open(self, text: str, **kwargs: Any) -> tuple[SocketDef, Listener]:
        sdef = parse_row(len(self.listeners) + 1, text)
        listener = open_listener(
            sdef,
            len(self.listeners) + 1,
            Dispatcher(self.recorder),
            reactor=reactor,
            tls=self.domains,
            **kwargs,
        )
        self.listeners.append(listener)
        return sdef, listener


@pytest_twisted.async_yield_fixture()
async def tls(tmp_path: Path) -> AsyncIterator[TlsSockets]:
    opened = TlsSockets(TestPKI(tmp_path / "pki"))
    yield opened
    for listener in opened.listeners:
        await listener.stop()


def domain(name: str, files: CertFiles, **kwargs: Any) -> TLSDomainSettings:
    return TLSDomainSettings(
        name=name, certificate=files.certificate, private_key=files.private_key, **kwargs
    )


# -- serving -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tls_options_gets_200_and_the_socket_says_tls(tls: TlsSockets) -> None:
    tls.load(domain("default", tls.pki.issue("server", "localhost", "127.0.0.1")))
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    client = await tls_connect(port, tls.pki)
    answer = await ask(client, port, "t1")
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-t1" in answer
    assert f"Contact: <sip:127.0.0.1:{port};transport=tls>".encode() in answer
    context = tls.recorder.contexts[-1]
    assert context.socket.proto == "tls"
    assert context.socket.via_transport == "TLS"
    assert listener.counters.received == 1
    assert listener.counters.connections == 1
    await close(client)


@pytest_twisted.ensureDeferred
async def test_client_verifying_the_ip_address_gets_the_handshake(tls: TlsSockets) -> None:
    tls.load(domain("default", tls.pki.issue("server", "127.0.0.1")))
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    client = await tls_connect(port, tls.pki, server_name="127.0.0.1")
    assert client.peer_cn == "127.0.0.1"
    await close(client)


@pytest_twisted.ensureDeferred
async def test_stop_closes_tls_connections_and_the_port_refuses(tls: TlsSockets) -> None:
    tls.load(domain("default", tls.pki.issue("server", "localhost")))
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    client = await tls_connect(port, tls.pki)
    await ask(client, port, "last")
    await listener.stop()
    await client.lost
    assert listener.counters.connections == 0
    with pytest.raises(ConnectionRefusedError):
        await tls_connect(port, tls.pki)


def test_socket_with_no_matching_domain_is_a_listen_error(tls: TlsSockets) -> None:
    tls.load(domain("only", tls.pki.issue("s", "localhost"), match_address="127.0.0.2:5061"))
    with pytest.raises(ListenError) as caught:
        tls.open(f"tls:127.0.0.1:{free_port()}")
    assert "no TLS domain matches 127.0.0.1:" in caught.value.reason
    assert "127.0.0.2:5061" in caught.value.reason


def test_tls_socket_without_any_domain_is_a_listen_error(tls: TlsSockets) -> None:
    with pytest.raises(ListenError, match=r"no TLS domain is configured"):
        tls.open(f"tls:127.0.0.1:{free_port()}")


# -- domains: address, SNI, client certificates --------------------------------------


@pytest_twisted.ensureDeferred
async def test_address_domain_wins_over_the_star_domain(tls: TlsSockets) -> None:
    port, other = free_port(), free_port()
    tls.load(
        domain("any", tls.pki.issue("any", "localhost", "any.example")),
        domain(
            "own",
            tls.pki.issue("own", "localhost", "own.example"),
            match_address=f"127.0.0.1:{port}",
        ),
    )
    tls.open(f"tls:127.0.0.1:{port}")
    tls.open(f"tls:127.0.0.1:{other}")
    own = await tls_connect(port, tls.pki)
    anywhere = await tls_connect(other, tls.pki)
    assert (own.peer_cn, anywhere.peer_cn) == ("localhost", "localhost")
    assert own.transport is not None and anywhere.transport is not None
    names = []
    for client in (own, anywhere):
        cert = client.transport.getPeerCertificate().to_cryptography()  # type: ignore[union-attr]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.append(san.get_values_for_type(x509.DNSName))
    assert names == [["localhost", "own.example"], ["localhost", "any.example"]]
    await close(own)
    await close(anywhere)


@pytest_twisted.ensureDeferred
async def test_two_domains_on_one_socket_are_picked_by_sni(tls: TlsSockets) -> None:
    tls.load(
        domain("alpha", tls.pki.issue("alpha", "alpha.example"), match_sni=["alpha.example"]),
        domain("beta", tls.pki.issue("beta", "beta.example"), match_sni=["*.beta.example", "*"]),
    )
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    alpha = await tls_connect(port, tls.pki, server_name="alpha.example")
    assert alpha.peer_cn == "alpha.example"
    await ask(alpha, port, "a")
    # No SNI match: the "*" domain answers (and the client refuses the name).
    with pytest.raises(Exception, match=r"(?i)verif|certificate"):
        await tls_connect(port, tls.pki, server_name="gamma.example")
    beta = await tls_connect(port, tls.pki, server_name="beta.example")
    assert beta.peer_cn == "beta.example"
    await ask(beta, port, "b")
    await close(alpha)
    await close(beta)


@pytest_twisted.ensureDeferred
async def test_required_client_certificate_refuses_a_client_without_one(
    tls: TlsSockets,
) -> None:
    clients = TestPKI(tls.pki.directory / "clients", name="client-ca")
    tls.load(
        domain(
            "mtls",
            tls.pki.issue("server", "localhost"),
            ca_list=clients.ca_file,
            verify_client=True,
            require_client_cert=True,
        )
    )
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    await refused(port, tls.pki)
    await wait_until(lambda: listener.counters.handshake_failures == 1)
    assert listener.counters.received == 0
    stranger = TestPKI(tls.pki.directory / "stranger", name="stranger-ca")
    await refused(port, tls.pki, client=stranger.issue("phone", "phone.example"))
    await wait_until(lambda: listener.counters.handshake_failures == 2)
    assert listener.counters.received == 0
    good = await tls_connect(port, tls.pki, client=clients.issue("phone", "phone.example"))
    answer = await ask(good, port, "good")
    assert answer.startswith(b"SIP/2.0 200 OK")
    await close(good)


@pytest_twisted.ensureDeferred
async def test_verify_client_without_require_accepts_a_client_without_certificate(
    tls: TlsSockets,
) -> None:
    clients = TestPKI(tls.pki.directory / "clients", name="client-ca")
    tls.load(
        domain(
            "optional",
            tls.pki.issue("server", "localhost"),
            ca_list=clients.ca_file,
            verify_client=True,
        )
    )
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    anonymous = await tls_connect(port, tls.pki)
    assert (await ask(anonymous, port, "anon")).startswith(b"SIP/2.0 200 OK")
    await close(anonymous)


@pytest_twisted.ensureDeferred
async def test_sni_switch_applies_the_chosen_domains_client_verification(
    tls: TlsSockets,
) -> None:
    clients = TestPKI(tls.pki.directory / "clients", name="client-ca")
    tls.load(
        domain("open", tls.pki.issue("open", "open.example"), match_sni=["*"]),
        domain(
            "strict",
            tls.pki.issue("strict", "strict.example"),
            match_sni=["strict.example"],
            ca_list=clients.ca_file,
            verify_client=True,
            require_client_cert=True,
        ),
    )
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    opened = await tls_connect(port, tls.pki, server_name="open.example")
    assert (await ask(opened, port, "open")).startswith(b"SIP/2.0 200 OK")
    await refused(port, tls.pki, server_name="strict.example")
    await wait_until(lambda: listener.counters.handshake_failures == 1)
    good = await tls_connect(
        port, tls.pki, server_name="strict.example", client=clients.issue("c", "c.example")
    )
    assert good.peer_cn == "strict.example"
    assert (await ask(good, port, "strict-ok")).startswith(b"SIP/2.0 200 OK")
    await close(opened)
    await close(good)


@pytest_twisted.ensureDeferred
async def test_min_version_13_refuses_a_tls_12_client(tls: TlsSockets) -> None:
    tls.load(domain("modern", tls.pki.issue("server", "localhost"), min_version="1.3"))
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    with pytest.raises(Exception, match=r"(?i)version|protocol"):
        await tls_connect(port, tls.pki, highest=ssl.TLSVersion.TLSv1_2)
    await wait_until(lambda: listener.counters.handshake_failures == 1)
    modern = await tls_connect(port, tls.pki)
    assert (await ask(modern, port, "13")).startswith(b"SIP/2.0 200 OK")
    await close(modern)


@pytest_twisted.ensureDeferred
async def test_default_min_version_accepts_tls_12(tls: TlsSockets) -> None:
    tls.load(domain("default", tls.pki.issue("server", "localhost")))
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    older = await tls_connect(port, tls.pki, highest=ssl.TLSVersion.TLSv1_2)
    assert (await ask(older, port, "12")).startswith(b"SIP/2.0 200 OK")
    await close(older)


# -- reload ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reload_serves_new_connections_with_the_new_certificate(tls: TlsSockets) -> None:
    files = tls.pki.issue("server", "localhost", "old.example")
    domains = tls.load(domain("main", files))
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    before = await tls_connect(port, tls.pki, server_name="old.example")
    assert before.peer_cn == "localhost"
    fresh = tls.pki.issue("fresh", "new.example", "localhost")
    files.certificate.write_bytes(fresh.certificate.read_bytes())
    files.private_key.write_bytes(fresh.private_key.read_bytes())
    report = domains.reload()
    assert (report.reloaded, report.failed) == (["main"], [])
    after = await tls_connect(port, tls.pki, server_name="new.example")
    assert after.peer_cn == "new.example"
    # The connection made before the reload still works.
    assert (await ask(before, port, "old-conn")).count(b"SIP/2.0 200 OK") == 1
    await close(before)
    await close(after)


@pytest_twisted.ensureDeferred
async def test_reload_with_a_broken_file_keeps_the_old_certificate(tls: TlsSockets) -> None:
    good = tls.pki.issue("good", "localhost")
    other = tls.pki.issue("other", "other.example")
    domains = tls.load(
        domain("main", good, match_sni=["*"]),
        domain("side", other, match_sni=["other.example"]),
    )
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    good.certificate.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    replacement = tls.pki.issue("other2", "other.example", "side.example")
    other.certificate.write_bytes(replacement.certificate.read_bytes())
    other.private_key.write_bytes(replacement.private_key.read_bytes())
    report = domains.reload()
    assert report.reloaded == ["side"]
    [(name, reason)] = report.failed
    assert name == "main"
    assert str(good.certificate) in reason
    assert "domain 'main'" in report.summary()
    assert "old certificate kept" in report.summary()
    client = await tls_connect(port, tls.pki)
    assert client.peer_cn == "localhost"
    assert (await ask(client, port, "still")).startswith(b"SIP/2.0 200 OK")
    await close(client)


# -- outbound -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_send_over_tls_verifies_the_server_name(tls: TlsSockets) -> None:
    tls.load(
        domain("main", tls.pki.issue("server", "localhost", "127.0.0.1"), ca_list=tls.pki.ca_file)
    )
    sender_port, receiver_port = free_port(), free_port()
    _, sender = tls.open(f"tls:127.0.0.1:{sender_port}")
    _, receiver = tls.open(f"tls:127.0.0.1:{receiver_port}")
    await sender.send(options(receiver_port, "out", transport="TLS"), ("127.0.0.1", receiver_port))
    await wait_until(lambda: receiver.counters.received == 1)
    # The receiver's answer came back on the same connection.
    await wait_until(lambda: sender.counters.received == 1)
    assert sender.counters.connections == 1


@pytest_twisted.ensureDeferred
async def test_send_to_a_server_with_the_wrong_name_fails(tls: TlsSockets) -> None:
    wrong = TestPKI(tls.pki.directory / "wrong", name="wrong")
    receiver_port = free_port()
    tls.load(
        domain("main", tls.pki.issue("server", "127.0.0.1"), ca_list=tls.pki.ca_file),
        domain(
            "impostor",
            wrong.issue("impostor", "elsewhere.example"),
            match_address=f"127.0.0.1:{receiver_port}",
        ),
    )
    _, sender = tls.open(f"tls:127.0.0.1:{free_port()}")
    _, receiver = tls.open(f"tls:127.0.0.1:{receiver_port}")
    with pytest.raises(ConnectionError, match="TLS handshake with"):
        await sender.send(
            options(receiver_port, "x", transport="TLS"), ("127.0.0.1", receiver_port)
        )
    assert receiver.counters.received == 0
    assert sender.counters.drops == 1


@pytest_twisted.ensureDeferred
async def test_send_without_server_verification_when_the_domain_says_so(tls: TlsSockets) -> None:
    wrong = TestPKI(tls.pki.directory / "wrong", name="wrong")
    receiver_port = free_port()
    tls.load(
        domain("main", tls.pki.issue("server", "127.0.0.1"), verify_server=False),
        domain(
            "impostor",
            wrong.issue("impostor", "elsewhere.example"),
            match_address=f"127.0.0.1:{receiver_port}",
        ),
    )
    _, sender = tls.open(f"tls:127.0.0.1:{free_port()}")
    _, receiver = tls.open(f"tls:127.0.0.1:{receiver_port}")
    await sender.send(options(receiver_port, "y", transport="TLS"), ("127.0.0.1", receiver_port))
    await wait_until(lambda: receiver.counters.received == 1)


# -- hostile clients ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_plain_text_on_a_tls_socket_closes_that_connection_only(tls: TlsSockets) -> None:
    tls.load(domain("main", tls.pki.issue("server", "localhost")))
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}")
    plain = Client()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), plain)
    assert plain.transport is not None
    plain.transport.write(options(port, "plain", transport="TCP"))
    await plain.lost
    await wait_until(lambda: listener.counters.handshake_failures == 1)
    good = await tls_connect(port, tls.pki)
    assert (await ask(good, port, "after")).startswith(b"SIP/2.0 200 OK")
    await close(good)


@pytest_twisted.ensureDeferred
async def test_connection_that_never_starts_tls_is_closed_when_idle(tls: TlsSockets) -> None:
    tls.load(domain("main", tls.pki.issue("server", "localhost")))
    port = free_port()
    _, listener = tls.open(f"tls:127.0.0.1:{port}", idle_timeout=0.3)
    silent = Client()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), silent)
    await silent.lost
    await wait_until(lambda: listener.counters.connections == 0)
    assert listener.counters.handshake_failures == 1


def test_tls_socket_binds_the_port(tls: TlsSockets) -> None:
    tls.load(domain("main", tls.pki.issue("server", "localhost")))
    port = free_port()
    tls.open(f"tls:127.0.0.1:{port}")
    with socket.socket() as probe, pytest.raises(OSError):
        probe.bind(("127.0.0.1", port))
