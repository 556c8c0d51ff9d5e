"""SIP URIs as the proxy routes on them: parts, destination, host names (pure).

`parse_uri` reads a ``sip:``/``sips:`` URI (bare or in angle brackets);
`destination_of` says where a request for it goes (``maddr`` or host, port,
transport); `canonical_host` and `host_matches` compare host names the way
a ``[[proxy.route]]`` ``uri_host`` matches a Request-URI. Every failure is a
`UriError` with a reason naming the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sipsock.addresses import bracket, normal_ip, parse_ip, unbracket
from sipsock.sip.routing import default_port
from sipsock.sockdef import PROTOS

_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_match_uri: Final = re.compile(
    r"(?i)(sips?):(?:([^@<>\s]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?"
    r"((?:;[^;?<>\s]*)*)(?:\?[^<>\s]*)?"
).fullmatch


class UriError(ValueError):
    """A URI or host that cannot be used; ``reason`` (also ``str(error)``) says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class SipUri:
    """The parts of a ``sip:`` or ``sips:`` URI the proxy routes on.

    ``host`` is without IPv6 brackets; ``port`` is None when the URI has none;
    ``params`` keeps the URI parameters in order (a parameter without ``=``
    has the value None).
    """

    scheme: str
    host: str
    port: int | None = None
    user: str | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive); ``""`` when it has none."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return "" if value is None else value
        return None


def parse_uri(text: str) -> SipUri:
    """Parse a SIP URI, bare or in angle brackets (``"Name" <sip:...>;params``).

    Raises `UriError` for anything else, including other schemes.
    """
    value = text.strip()
    if "<" in value:
        start, end = value.find("<"), value.find(">")
        if end < start:
            raise UriError(f"{show_value(text)} has an unclosed '<'")
        value = value[start + 1 : end].strip()
    match = _match_uri(value)
    if match is None:
        raise UriError(f"{show_value(text)} is not a sip: or sips: URI")
    scheme, user, host, port_text, rest = match.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port <= 65535:
            raise UriError(f"port {port} of {show_value(text)} is out of range (1-65535)")
    if host.startswith("["):
        host = unbracket(host)
        address = parse_ip(host)
        if address is None or address.version != 6:
            raise UriError(f"{show_value(host)} is not an IPv6 address")
    params: list[tuple[str, str | None]] = []
    for item in rest.split(";")[1:]:
        name, equals, param_value = item.partition("=")
        if name:
            params.append((name, param_value if equals else None))
    return SipUri(scheme.lower(), host, port, user, tuple(params))


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send a request: a host (name or address), a port, a transport.

    ``transport`` (udp, tcp, tls, ws, wss) is None when the URI does not say:
    then the outgoing socket's protocol decides, else UDP. ``port`` is None
    when the URI has none: the default port of the transport.
    """

    host: str
    port: int | None = None
    transport: str | None = None

    def address(self, transport: str) -> tuple[str, int]:
        """``(host, port)`` once the transport is known."""
        return self.host, self.port or default_port(transport)

    def __str__(self) -> str:
        host = bracket(self.host)
        port = f":{self.port}" if self.port else ""
        transport = f";transport={self.transport}" if self.transport else ""
        return f"sip:{host}{port}{transport}"


def destination_of(uri: SipUri) -> Destination:
    """The destination a URI names: ``maddr`` or host, port, ``transport`` (sips: TLS).

    Raises `UriError` for a transport sipsock does not speak.
    """
    transport = uri.param("transport")
    if transport is not None:
        transport = transport.lower()
        if uri.scheme == "sips" and transport in ("tcp", "ws"):
            transport = "tls" if transport == "tcp" else "wss"
        if transport not in PROTOS:
            raise UriError(f"transport {transport!r} is not one of {', '.join(PROTOS)}")
    elif uri.scheme == "sips":
        transport = "tls"
    host = uri.param("maddr") or uri.host
    return Destination(unbracket(host), uri.port, transport)


def request_uri_host(uri: str) -> str | None:
    """The host of a SIP Request-URI (None for another scheme or a malformed URI)."""
    try:
        return parse_uri(uri).host
    except UriError:
        return None


def canonical_host(host: str, *, wildcard: bool = False) -> str:
    """Lower-case name or canonical IP address; `UriError` naming the problem.

    With ``wildcard``, a leading ``*.`` label (``*.example.com``) is allowed.
    """
    text = unbracket(host.strip())
    if "%" in text or not text.isascii():
        raise UriError(f"{show_value(host)} is not a host name or an IP address without a zone id")
    address = normal_ip(text)
    if address is not None:
        return address
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if wildcard and labels and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise UriError(f"{show_value(host)} is not a host name or an IP address")
    return name


def host_matches(pattern: str, host: str | None) -> bool:
    """Whether ``host`` is ``pattern`` (canonical form), or under ``*.domain``."""
    if host is None:
        return False
    try:
        host = canonical_host(host)
    except UriError:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def show_value(value: object, limit: int = 60) -> str:
    """A value for an error message: strings quoted, anything cut at ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text) if isinstance(value, str) else text
