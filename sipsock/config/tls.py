"""``[tls]``: the ``[[tls.domain]]`` tables, each a certificate and what it serves.

Checked here: names unique, ``match_address`` a canonical ``ip:port``,
``match_sni`` names, and one TLS policy per address (OpenSSL settles the
version and cipher before the server name is known). The files are read by
`sipsock.transport.tls`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sipsock.addresses import AddressError, join_host_port, normal_ip, split_host_port
from sipsock.config.reader import Reader, Section

TLS_VERSIONS: Final = ("1.2", "1.3")
_DOMAIN_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SNI_RE: Final = re.compile(r"(\*\.)?(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


@dataclass(frozen=True)
class TLSDomainSettings:
    """One ``[[tls.domain]]`` table: a certificate and the sockets and names it serves.

    ``match_address`` is ``"*"`` or a canonical ``ip:port`` (IPv6 in
    brackets); ``match_sni`` holds lower-case names, ``"*"`` (any name, and
    clients that send none) or ``"*.suffix"``. ``verify_server`` applies to
    outbound connections from the domain's sockets.
    """

    name: str
    certificate: Path
    private_key: Path
    match_address: str = "*"
    match_sni: tuple[str, ...] = ("*",)
    ca_list: Path | None = None
    verify_client: bool = False
    require_client_cert: bool = False
    verify_server: bool = True
    min_version: str = "1.2"
    ciphers: str | None = None


@dataclass(frozen=True)
class TLSSettings:
    """``[tls]``: the TLS domains, in the order of the file."""

    domains: tuple[TLSDomainSettings, ...] = ()


def read_tls(reader: Reader, data: Mapping[str, Any]) -> TLSSettings:
    sec = reader.section(data, "tls", keys={"domain"})
    domains: list[TLSDomainSettings] = []
    for index, table in enumerate(sec.get("domain", list, [])):
        if not isinstance(table, Mapping):
            sec.fail(f"domain[{index}]", f"must be a table ([[tls.domain]]), not {table!r}")
        domains.append(_read_tls_domain(reader, table, index))
    _check_tls_domains(reader, domains)
    return TLSSettings(domains=tuple(domains))


def _read_tls_domain(reader: Reader, table: Mapping[str, Any], index: int) -> TLSDomainSettings:
    name = table.get("name")
    named = isinstance(name, str) and _DOMAIN_NAME_RE.fullmatch(name)
    sec = Section(
        reader,
        f"tls.domain {name!r}" if named else f"tls.domain[{index}]",
        table,
        TLSDomainSettings,
    )
    if "name" not in sec:
        sec.fail("name", "missing (every [[tls.domain]] needs a name)")
    name = sec.get("name", str)
    if not _DOMAIN_NAME_RE.fullmatch(name):
        sec.fail("name", f"{name[:70]!r} is not a domain name ([A-Za-z0-9_.-], 1-64)")
    paths: dict[str, Path] = {}
    for key in ("certificate", "private_key"):
        if key not in sec:
            sec.fail(key, "missing (a PEM file)")
        value = sec.get(key, str)
        if not value:
            sec.fail(key, "must not be empty")
        paths[key] = Path(value)
    ca_text = sec.get("ca_list", str)
    ca_list = Path(ca_text) if ca_text else None
    verify_client = sec.get("verify_client", bool)
    require = sec.get("require_client_cert", bool)
    if require:
        verify_client = True
    if verify_client and ca_list is None:
        key = "require_client_cert" if require else "verify_client"
        sec.fail(key, "needs ca_list (the CA certificates client certificates must chain to)")
    ciphers = sec.get("ciphers", str)
    if ciphers is not None and not ciphers.strip():
        sec.fail("ciphers", "must not be empty (leave it out for the default)")
    return TLSDomainSettings(
        name=name,
        certificate=paths["certificate"],
        private_key=paths["private_key"],
        match_address=_read_match_address(sec),
        match_sni=_read_match_sni(sec),
        ca_list=ca_list,
        verify_client=verify_client,
        require_client_cert=require,
        verify_server=sec.get("verify_server", bool),
        min_version=sec.choice("min_version", TLS_VERSIONS),
        ciphers=ciphers,
    )


def _read_match_address(sec: Section) -> str:
    raw: str = sec.get("match_address", str)
    text = raw.strip()
    if text == "*":
        return text
    try:
        host, port = split_host_port(text)
    except AddressError:
        host, port = "", None
    address = normal_ip(host)
    if address is None or port is None:
        sec.fail("match_address", f'{text[:70]!r} is not "*" nor ip:port (IPv6 as [addr]:port)')
    assert address is not None and port is not None
    return join_host_port(address, port)


def _read_match_sni(sec: Section) -> tuple[str, ...]:
    raw = sec.get("match_sni", list)
    if not raw:
        sec.fail("match_sni", 'must not be empty (use ["*"] for any name)')
    names: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            sec.fail(f"match_sni[{index}]", f"must be a string, not {item!r}")
        name = item.strip().lower().rstrip(".")
        if name != "*" and (len(name) > 253 or not _SNI_RE.fullmatch(name)):
            sec.fail(f"match_sni[{index}]", f"{item[:70]!r} is not a host name, *.name or *")
        if name in names:
            sec.fail(f"match_sni[{index}]", f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def _check_tls_domains(reader: Reader, domains: list[TLSDomainSettings]) -> None:
    """Names unique; within one match_address, SNI names unique and one TLS policy.

    OpenSSL picks the protocol version and the cipher before the server name
    is known, so domains sharing an address must agree on both.
    """
    seen: dict[str, int] = {}
    first_of_group: dict[str, TLSDomainSettings] = {}
    sni_owner: dict[tuple[str, str], str] = {}
    for index, domain in enumerate(domains):
        sec = f"tls.domain {domain.name!r}"
        if domain.name in seen:
            reader.fail(sec, "name", f"{domain.name!r} is already domain[{seen[domain.name]}]")
        seen[domain.name] = index
        first = first_of_group.setdefault(domain.match_address, domain)
        for key in ("min_version", "ciphers"):
            if getattr(domain, key) != getattr(first, key):
                reader.fail(
                    sec,
                    key,
                    f"differs from domain {first.name!r} on the same match_address "
                    f"{domain.match_address!r} (OpenSSL settles the {key.replace('_', ' ')} "
                    "before the server name is known)",
                )
        for name in domain.match_sni:
            owner = sni_owner.setdefault((domain.match_address, name), domain.name)
            if owner != domain.name:
                reader.fail(
                    sec,
                    "match_sni",
                    f"{name!r} is already served by domain {owner!r} on match_address "
                    f"{domain.match_address!r}",
                )
