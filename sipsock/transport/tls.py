"""TLS domains: the certificates of TLS and WSS sockets, chosen by address and SNI.

A *domain* (``[[tls.domain]]`` in the config) is a certificate with its key,
the sockets it serves (``match_address``: one ``ip:port``, or ``"*"``) and the
names it answers for (``match_sni``). A TLS or WSS socket serves the domains
whose ``match_address`` is its own address, else the ``"*"`` domains (its
*group*); among them the client's SNI picks one, as OpenSIPS's tls_mgm does.
Client verification (``verify_client`` / ``require_client_cert`` against
``ca_list``), the lowest protocol version and the ciphers belong to the domain.

`TLSDomains` loads every domain at start (any failure is a `TLSError` naming
the domain), hands each socket a `SocketTLS` (the server connection creator
used for accepted connections, and the client creator for outbound ones), and
`TLSDomains.reload` rebuilds every domain from its files: each one is built
completely before it replaces the old one, and a domain that fails keeps its
old certificate. Connections already open keep the context they started with.

Contexts are built with pyOpenSSL through `twisted.internet.ssl.CertificateOptions`
from `cryptography` objects. The rules (which group serves a socket, which
domain answers a server name) are plain functions at the top of this module.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from sipsock.addresses import join_host_port, normal_ip, unbracket
from sipsock.config import TLSDomainSettings
from sipsock.sockdef import SocketDef
from sipsock.transport.tlserrors import describe_tls_error

#: Largest certificate, key or CA file read (a PEM bundle of many CAs fits).
MAX_PEM_FILE: Final = 4 * 1024 * 1024
#: The group of the domains whose match_address is "*".
ANY_ADDRESS: Final = "*"

_TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TLSError(Exception):
    """A TLS domain that cannot be loaded, or a socket that no domain serves.

    ``domain`` names the domain (None when the problem is that none matches);
    ``reason`` says what is wrong in words a person can act on.
    """

    def __init__(self, domain: str | None, reason: str) -> None:
        self.domain = domain
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.domain is None:
            return self.reason
        return f"TLS domain {self.domain!r}: {self.reason}"


# -- rules (pure) ------------------------------------------------------------------


def canonical_address(host: str, port: int) -> str:
    """``ip:port`` as ``match_address`` is written (IPv6 compressed, in brackets)."""
    address = normal_ip(host, zone="keep")
    return f"{host}:{port}" if address is None else join_host_port(address, port)


def group_of(domains: Sequence[TLSDomainSettings], host: str, port: int) -> str | None:
    """The ``match_address`` whose domains serve a socket on ``host:port``.

    The socket's own address when some domain names it, else ``"*"`` when a
    domain has it, else None (no domain serves the socket).
    """
    own = canonical_address(host, port)
    addresses = {domain.match_address for domain in domains}
    if own in addresses:
        return own
    if ANY_ADDRESS in addresses:
        return ANY_ADDRESS
    return None


def sni_matches(pattern: str, server_name: str) -> bool:
    """Whether a ``match_sni`` entry covers a (lower-case) server name.

    ``"*"`` covers any name; ``"*.example.com"`` covers exactly one more
    label (``a.example.com``, not ``example.com`` nor ``a.b.example.com``).
    """
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        head, _, rest = server_name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == server_name


def choose_domain(group: Sequence[TLSDomainSettings], server_name: str | None) -> TLSDomainSettings:
    """The domain of a group that answers a client asking for ``server_name``.

    An exact name wins over a ``*.suffix`` entry, which wins over ``"*"``. A
    client that sends no name, or a name no domain lists, gets the first
    domain with ``"*"``, else the first domain of the group.
    """
    if not group:
        raise ValueError("an empty group of TLS domains")
    fallback = next((d for d in group if "*" in d.match_sni), group[0])
    if not server_name:
        return fallback
    name = server_name.lower().rstrip(".")
    for exact in (True, False):
        for domain in group:
            for pattern in domain.match_sni:
                if pattern == "*" or pattern.startswith("*.") == exact:
                    continue
                if sni_matches(pattern, name):
                    return domain
    return fallback


def verify_mode(settings: TLSDomainSettings) -> int:
    """The OpenSSL verify flags of a server socket of this domain."""
    if not settings.verify_client:
        return SSL.VERIFY_NONE
    mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    if settings.require_client_cert:
        mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    return mode


# -- loading -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedDomain:
    """A domain whose files were read and whose server context is ready."""

    settings: TLSDomainSettings
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes = field(repr=False)
    ca: tuple[x509.Certificate, ...]
    context: SSL.Context = field(repr=False)
    loaded_at: float

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), as hex pairs."""
        digest = hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER))
        return digest.digest().hex(":").upper()

    def describe(self) -> dict[str, Any]:
        """What ``tls_list`` shows of the domain."""
        settings = self.settings
        return {
            "name": settings.name,
            "match_address": settings.match_address,
            "match_sni": list(settings.match_sni),
            "certificate": str(settings.certificate),
            "subject": self.certificate.subject.rfc4514_string(),
            "not_after": self.certificate.not_valid_after_utc.isoformat(),
            "sha256": self.fingerprint,
            "verify_client": settings.verify_client,
            "require_client_cert": settings.require_client_cert,
            "min_version": settings.min_version,
            "loaded_at": self.loaded_at,
        }

    def options_kwargs(self) -> dict[str, Any]:
        """`CertificateOptions` arguments: certificate, chain, key, version and ciphers."""
        return options_kwargs(self.settings, self.certificate, self.chain, self.private_key)

    def certificate_options(self) -> ssl.CertificateOptions:
        """`CertificateOptions` with this domain's certificate and policy, no verification."""
        return ssl.CertificateOptions(**self.options_kwargs())


def options_kwargs(
    settings: TLSDomainSettings,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    private_key: PrivateKeyTypes,
) -> dict[str, Any]:
    """`CertificateOptions` arguments for a domain's certificate, version and ciphers."""
    options: dict[str, Any] = {
        "privateKey": private_key,
        "certificate": certificate,
        "extraCertChain": list(chain),
        "raiseMinimumTo": _TLS_VERSIONS[settings.min_version],
    }
    if settings.ciphers is not None:
        options["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(  # type: ignore[no-untyped-call]
            settings.ciphers
        )
    return options


def as_pyopenssl(certificates: Sequence[x509.Certificate]) -> list[crypto.X509]:
    """Certificates as pyOpenSSL objects (what an OpenSSL trust store takes)."""
    return [crypto.X509.from_cryptography(cert) for cert in certificates]


ServerNameCallback = Callable[[SSL.Connection], None]


def load_domain(
    settings: TLSDomainSettings,
    on_server_name: ServerNameCallback,
    *,
    now: float = 0.0,
) -> LoadedDomain:
    """Read a domain's files and build its server context; raises `TLSError`.

    ``on_server_name`` is installed as the context's SNI callback.
    """
    name = settings.name
    certs = _load_certificates(name, "certificate", settings.certificate)
    key = _load_private_key(name, settings.private_key)
    if _public_der(certs[0].public_key()) != _public_der(key.public_key()):
        raise TLSError(
            name,
            f"private_key {settings.private_key} does not belong to the certificate "
            f"{settings.certificate}",
        )
    ca: tuple[x509.Certificate, ...] = ()
    if settings.ca_list is not None:
        ca = tuple(_load_certificates(name, "ca_list", settings.ca_list))
    extra: dict[str, Any] = {"enableSessions": False}
    if settings.verify_client:
        extra.update(
            verify=True, caCerts=as_pyopenssl(ca), requireCertificate=settings.require_client_cert
        )
    try:
        options = ssl.CertificateOptions(
            **options_kwargs(settings, certs[0], certs[1:], key), **extra
        )
        context = options.getContext()
        for authority in ca if settings.verify_client else ():
            context.add_client_ca(authority)
        context.set_tlsext_servername_callback(on_server_name)
        # Twisted's ALPN callback answers an empty protocol when the client
        # offers ALPN (Node, browsers) and the server speaks none, which
        # OpenSSL turns into an "internal error" alert. We speak no ALPN
        # protocol: say so, and the handshake goes on without one.
        context.set_alpn_select_callback(_no_alpn)
    except ValueError as exc:
        raise TLSError(name, _options_reason(settings, exc)) from None
    except SSL.Error as exc:
        raise TLSError(
            name, f"OpenSSL refused the certificate or key: {describe_tls_error(exc)}"
        ) from None
    return LoadedDomain(
        settings=settings,
        certificate=certs[0],
        chain=tuple(certs[1:]),
        private_key=key,
        ca=ca,
        context=context,
        loaded_at=now,
    )


def _no_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """ALPN select callback of a server that speaks no ALPN protocol."""
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _read_pem(domain: str, key: str, path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM_FILE + 1)
    except FileNotFoundError:
        raise TLSError(domain, f"{key} {path}: no such file") from None
    except IsADirectoryError:
        raise TLSError(domain, f"{key} {path}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise TLSError(domain, f"{key} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_FILE:
        raise TLSError(domain, f"{key} {path}: larger than {MAX_PEM_FILE} bytes")
    return data


def _load_certificates(domain: str, key: str, path: Path) -> list[x509.Certificate]:
    data = _read_pem(domain, key, path)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSError(domain, f"{key} {path}: no PEM certificate in the file")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        detail = "broken PEM framing" if "PEM file" in str(exc) else "not a valid certificate"
        raise TLSError(domain, f"{key} {path}: cannot read the certificate ({detail})") from None
    if not certs:
        raise TLSError(domain, f"{key} {path}: no PEM certificate in the file")
    return certs


def _load_private_key(domain: str, path: Path) -> PrivateKeyTypes:
    data = _read_pem(domain, "private_key", path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSError(
            domain, f"private_key {path}: the key is encrypted (a key without passphrase is needed)"
        ) from None
    except ValueError as exc:
        reason = str(exc).split("\n")[0] or "not a PEM private key"
        raise TLSError(domain, f"private_key {path}: {reason}") from None
    except Exception as exc:  # UnsupportedAlgorithm and friends
        raise TLSError(domain, f"private_key {path}: {exc}") from None


def _public_der(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _options_reason(settings: TLSDomainSettings, exc: ValueError) -> str:
    text = str(exc)
    if "cipher" in text.lower():
        return f"ciphers {settings.ciphers!r}: no usable cipher on this system"
    return text


# -- the running domains -------------------------------------------------------------


@dataclass
class TLSReloadReport:
    """What `TLSDomains.reload` did: domains swapped in, and those that kept their old one."""

    reloaded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """The report as ``tls_reload`` answers it."""
        return {
            "reloaded": list(self.reloaded),
            "failed": [{"domain": name, "reason": reason} for name, reason in self.failed],
        }

    def summary(self) -> str:
        """One line: which domains failed and why, and that they kept their old certificate."""
        failed = "; ".join(f"domain {name!r}: {reason}" for name, reason in self.failed)
        kept = "old certificate kept" if len(self.failed) == 1 else "old certificates kept"
        done = ", ".join(repr(name) for name in self.reloaded) or "none"
        return f"TLS reload failed for {failed} ({kept}); reloaded: {done}"


class TLSDomains:
    """Every TLS domain of the daemon, loaded and ready; rebuilt by `reload`.

    Raises `TLSError` at construction when a domain cannot be loaded.
    """

    log = Logger()

    def __init__(
        self, domains: Sequence[TLSDomainSettings], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = tuple(domains)
        self._clock = clock
        self._groups: dict[str, list[TLSDomainSettings]] = {}
        for settings in self._settings:
            self._groups.setdefault(settings.match_address, []).append(settings)
        self._loaded: dict[str, LoadedDomain] = {}
        for settings in self._settings:
            self._loaded[settings.name] = self._load(settings)
            self._log_loaded(self._loaded[settings.name], "loaded")

    @property
    def names(self) -> list[str]:
        """The domain names, in the order of the config."""
        return [settings.name for settings in self._settings]

    def loaded(self, name: str) -> LoadedDomain:
        """The domain in use under that name (KeyError when there is none)."""
        return self._loaded[name]

    def _load(self, settings: TLSDomainSettings) -> LoadedDomain:
        group = settings.match_address

        def on_server_name(connection: SSL.Connection) -> None:
            self._switch_by_sni(group, connection)

        return load_domain(settings, on_server_name, now=self._clock())

    def _log_loaded(self, domain: LoadedDomain, what: str) -> None:
        self.log.info(
            "TLS domain {domain} {what}: {subject}, valid until {not_after}, sha256 {sha256}",
            domain=domain.settings.name,
            what=what,
            subject=domain.certificate.subject.rfc4514_string(),
            not_after=domain.certificate.not_valid_after_utc.isoformat(),
            sha256=domain.fingerprint,
        )
        if domain.certificate.not_valid_after_utc.timestamp() < self._clock():
            self.log.warn(
                "TLS domain {domain}: certificate {path} has expired",
                domain=domain.settings.name,
                path=str(domain.settings.certificate),
            )

    # -- sockets ---------------------------------------------------------------------

    def context_for(self, sdef: SocketDef) -> SocketTLS:
        """The TLS side of a TLS or WSS socket; raises `TLSError` when no domain serves it."""
        if not self._settings:
            raise TLSError(None, "no TLS domain is configured ([[tls.domain]] in [tls])")
        group = group_of(self._settings, sdef.host, sdef.port)
        if group is None:
            addresses = ", ".join(sorted({s.match_address for s in self._settings}))
            raise TLSError(
                None,
                f"no TLS domain matches {canonical_address(sdef.host, sdef.port)} "
                f'(match_address of the domains: {addresses}; add one with "*" or this address)',
            )
        return SocketTLS(self, group)

    def domains_of(self, group: str) -> list[LoadedDomain]:
        """The loaded domains of a group, in config order."""
        return [self._loaded[settings.name] for settings in self._groups[group]]

    def default_of(self, group: str) -> LoadedDomain:
        """The domain a client without SNI gets."""
        return self._loaded[choose_domain(self._groups[group], None).name]

    def for_server_name(self, group: str, server_name: str | None) -> LoadedDomain:
        """The domain answering ``server_name`` on a socket of ``group``."""
        return self._loaded[choose_domain(self._groups[group], server_name).name]

    def _switch_by_sni(self, group: str, connection: SSL.Connection) -> None:
        """SNI callback: move the handshake to the domain the client asked for."""
        try:
            raw = connection.get_servername()
            server_name = raw.decode("ascii", "replace") if raw else None
            domain = self.for_server_name(group, server_name)
            if connection.get_context() is not domain.context:
                connection.set_context(domain.context)
                # OpenSSL keeps the verify mode of the first context: set the
                # chosen domain's own.
                connection.set_verify(verify_mode(domain.settings))
        except Exception:
            self.log.failure("TLS: choosing the domain by SNI failed (group {group})", group=group)

    # -- reload ----------------------------------------------------------------------

    def reload(self) -> TLSReloadReport:
        """Rebuild every domain from its files; a domain that fails keeps its old one."""
        report = TLSReloadReport()
        for settings in self._settings:
            try:
                domain = self._load(settings)
            except TLSError as error:
                report.failed.append((settings.name, error.reason))
            except Exception as error:  # anything else is a failure of this domain only
                report.failed.append((settings.name, f"{type(error).__name__}: {error}"))
            else:
                self._loaded[settings.name] = domain
                report.reloaded.append(settings.name)
                self._log_loaded(domain, "reloaded")
                continue
            self.log.error(
                "TLS domain {domain} not reloaded, old certificate kept: {reason}",
                domain=settings.name,
                reason=report.failed[-1][1],
            )
        return report

    def prepare(self) -> tuple[dict[str, LoadedDomain], list[tuple[str, str]]]:
        """Every domain loaded again from its files, not in use yet; and those that failed.

        The first half of a reload that must succeed everywhere or nowhere
        (stream workers): `commit` puts the loaded domains in use.
        """
        loaded: dict[str, LoadedDomain] = {}
        failed: list[tuple[str, str]] = []
        for settings in self._settings:
            try:
                loaded[settings.name] = self._load(settings)
            except TLSError as error:
                failed.append((settings.name, error.reason))
            except Exception as error:  # anything else is a failure of this domain only
                failed.append((settings.name, f"{type(error).__name__}: {error}"))
        return loaded, failed

    def commit(self, loaded: dict[str, LoadedDomain]) -> list[str]:
        """Serve the domains of `prepare` (new connections get them); their names."""
        for name, domain in loaded.items():
            self._loaded[name] = domain
            self._log_loaded(domain, "reloaded")
        return list(loaded)

    def list_domains(self) -> list[dict[str, Any]]:
        """The domains in use, as ``tls_list`` shows them."""
        return [self._loaded[settings.name].describe() for settings in self._settings]

    # -- outbound --------------------------------------------------------------------

    def client_creator(self, group: str, host: str) -> IOpenSSLClientConnectionCreator:
        """Client TLS options for a connection from a socket of ``group`` to ``host``.

        The server's certificate is verified against ``host`` (service-identity;
        a name or an IP address) and the domain's ``ca_list``, or the system's
        trusted CAs when the domain has none, unless the domain sets
        ``verify_server = false``. The domain's certificate is offered when
        the server asks for one.
        """
        domain = self.default_of(group)
        if not domain.settings.verify_server:
            creator: IOpenSSLClientConnectionCreator = domain.certificate_options()
            return creator
        trust: Any
        if domain.ca:
            roots = [ssl.Certificate(ca) for ca in as_pyopenssl(domain.ca)]  # type: ignore[no-untyped-call]
            trust = ssl.trustRootFromCertificates(roots)  # type: ignore[no-untyped-call]
        else:
            trust = ssl.platformTrust()  # type: ignore[no-untyped-call]
        return ssl.optionsForClientTLS(
            unbracket(host), trustRoot=trust, extraCertificateOptions=domain.options_kwargs()
        )


@implementer(IOpenSSLServerConnectionCreator)
class SocketTLS:
    """The TLS side of one TLS or WSS socket: its group of domains.

    Each accepted connection starts with the group's default domain (the
    one a client without SNI gets); the SNI callback moves it to the domain
    the client asked for. Domains are looked up at each connection, so a
    reload reaches new connections at once.
    """

    def __init__(self, domains: TLSDomains, group: str) -> None:
        self.domains = domains
        self.group = group

    @property
    def domain_names(self) -> list[str]:
        return [d.settings.name for d in self.domains.domains_of(self.group)]

    def server_creator(self) -> IOpenSSLServerConnectionCreator:
        """What `TLSMemoryBIOFactory` takes for accepted connections (this object)."""
        return self

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """A new server-side OpenSSL connection on the group's default context."""
        domain = self.domains.default_of(self.group)
        return SSL.Connection(domain.context, None)

    def client_creator(self, host: str) -> IOpenSSLClientConnectionCreator:
        """Client TLS options for an outbound connection to ``host``."""
        return self.domains.client_creator(self.group, host)
