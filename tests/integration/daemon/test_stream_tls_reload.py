"""``tls_reload`` with two stream workers (``[core] tcp_workers = 2``, the default).

Issue 18's acceptance: after a ``tls_reload`` that swapped one certificate, a
TLS client checking SNI on two domains sees the new certificate for the
swapped domain and the old one for the other, from every stream worker, and
JsSIP over WSS to a dynamic socket still gets its 200.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_tls_ws_daemon import answers, connect_tls, jssip, tls_options
from tests.net import free_port
from tests.polling import poll_until
from tests.tables import SocketTable
from tests.tlsfiles import CertFiles, TestPKI, domain_toml

#: Connections opened at a time, and at most, until both stream workers hold some.
BATCH = 4
MAX_CONNECTIONS = 80


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


def fingerprint(files: CertFiles) -> str:
    """SHA-256 of the certificate in ``files`` (DER), as a server presents it."""
    der = ssl.PEM_cert_to_DER_cert(files.certificate.read_text())
    return hashlib.sha256(der).hexdigest()


def presented(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def stream_connections(daemon: Daemon) -> list[int]:
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row["Connections"] for row in rows if row.get("Pool") == "stream"]


def test_after_a_tls_reload_both_workers_serve_the_swapped_certificate_by_sni_and_jssip_over_wss(
    daemon_factory: DaemonFactory, sqlite_url: str, pki: TestPKI
) -> None:
    alpha = pki.issue("alpha", "alpha.example")
    beta = pki.issue("beta", "beta.example")
    web = pki.issue("web", "localhost", "127.0.0.1")
    extra = (
        "[websocket]\nrequire_origin = false\n"
        + domain_toml("alpha", alpha, match_sni=["alpha.example"])
        + domain_toml("beta", beta, match_sni=["beta.example"])
        + domain_toml("web", web, match_sni=["localhost"])
    )
    daemon = daemon_factory(sqlite_url, extra=extra)
    assert len(stream_connections(daemon)) == 2
    table = SocketTable(sqlite_url)
    table.init()
    tls_port, wss_port = free_port(), free_port()
    table.insert(f"tls:127.0.0.1:{tls_port}")
    table.insert(f"wss:127.0.0.1:{wss_port}")
    daemon.reload()
    old_alpha, old_beta = fingerprint(alpha), fingerprint(beta)

    # Swap beta's certificate (a new key too) and reload the TLS domains.
    fresh = pki.issue("beta-fresh", "beta.example")
    beta.certificate.write_bytes(fresh.certificate.read_bytes())
    beta.private_key.write_bytes(fresh.private_key.read_bytes())
    new_beta = fingerprint(beta)
    assert new_beta != old_beta
    assert daemon.mi("tls_reload") == "OK"

    held: list[ssl.SSLSocket] = []
    seen: dict[str, set[str]] = {"alpha.example": set(), "beta.example": set()}

    def both_workers_checked() -> bool:
        counts = stream_connections(daemon)
        if sum(counts) != len(held):
            return False  # the counters have not caught up yet
        if held and 0 not in counts:
            return True
        if len(held) < MAX_CONNECTIONS:
            for name in ("alpha.example", "beta.example") * (BATCH // 2):
                sock = connect_tls(tls_port, pki, server_name=name)
                held.append(sock)
                seen[name].add(presented(sock))
                assert tls_options(sock, tls_port) == 200
        return False

    try:
        poll_until(both_workers_checked, 30, "both stream workers hold TLS connections", 0.3)
        # Every connection, whichever worker took it: the new beta, the old alpha.
        assert seen == {"alpha.example": {old_alpha}, "beta.example": {new_beta}}
    finally:
        for sock in held:
            sock.close()

    got = answers(jssip(f"wss://localhost:{wss_port}", "options", ca=pki.ca_file))
    assert got["OPTIONS"]["status"] == 200
    assert got["OPTIONS"]["via"].startswith("SIP/2.0/WSS ")
