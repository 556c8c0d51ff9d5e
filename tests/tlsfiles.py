"""Certificates made at test time with trustme, written as the PEM files a domain reads."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509


@dataclass(frozen=True)
class CertFiles:
    """A certificate (with its chain) and its key, as PEM files."""

    certificate: Path
    private_key: Path

    def common_names(self) -> list[str]:
        cert = x509.load_pem_x509_certificate(self.certificate.read_bytes())
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.OID_COMMON_NAME)]


class TestPKI:
    """A throwaway CA in a directory; issues server and client certificates."""

    __test__ = False  # not a test class for pytest

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name=f"sipsock test {name}")
        self.ca_file = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, name: str, *identities: str) -> CertFiles:
        """A certificate for ``identities`` (host names, IPs), CN = the first one."""
        leaf = self.ca.issue_cert(*identities, common_name=identities[0])
        files = CertFiles(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        files.certificate.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(files.private_key))
        return files

    def client_context(
        self, client: CertFiles | None = None, *, check_hostname: bool = True
    ) -> ssl.SSLContext:
        """A stdlib client context trusting this CA (offering ``client`` when given)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = check_hostname
        if client is not None:
            context.load_cert_chain(str(client.certificate), str(client.private_key))
        return context


def domain_toml(
    name: str,
    files: CertFiles,
    *,
    match_address: str = "*",
    match_sni: list[str] | None = None,
    ca_list: Path | None = None,
    require_client_cert: bool = False,
    extra: str = "",
) -> str:
    """One ``[[tls.domain]]`` table."""
    lines = [
        "[[tls.domain]]",
        f'name = "{name}"',
        f'match_address = "{match_address}"',
        f'certificate = "{files.certificate}"',
        f'private_key = "{files.private_key}"',
    ]
    if match_sni is not None:
        lines.append("match_sni = [" + ", ".join(f'"{n}"' for n in match_sni) + "]")
    if ca_list is not None:
        lines.append(f'ca_list = "{ca_list}"')
    if require_client_cert:
        lines.append("require_client_cert = true")
    return "\n".join(lines) + "\n" + extra + "\n"


def peer_common_name(sock: ssl.SSLSocket) -> str:
    """The CN of the certificate a TLS server presented."""
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(x509.OID_COMMON_NAME)[0].value)


def tls_connect(
    port: int,
    context: ssl.SSLContext,
    *,
    server_name: str | None = "localhost",
    host: str = "127.0.0.1",
    timeout: float = 5.0,
) -> ssl.SSLSocket:
    """A TLS connection to ``host:port`` (handshake done), asking for ``server_name``."""
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise
