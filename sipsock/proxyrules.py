"""The rules of the stateless proxy (RFC 3261 section 16), as pure functions.

Nothing here sends, resolves or logs: `sipsock.apps.proxy` asks these
functions what to do and does it.

* **Routes** (`ProxyRoute`, `parse_route`, `find_route`): the operator's
  ``[[proxy.route]]`` tables, matched on the receiving socket's tag, the
  Request-URI host and the method.
* **Destinations** (`SipUri`, `parse_uri`, `Destination`): where a request
  goes, from a configured SIP URI, a Route entry or the Request-URI.
* **Forwarding rules**: Max-Forwards (`next_max_forwards`), the branch of the
  proxy's Via (`proxy_branch`, the same for every retransmission, for the
  CANCEL and for the ACK of a non-2xx answer), loop detection (`is_loop`),
  the Via and Record-Route values the proxy adds (`proxy_via`,
  `record_route_values`), and which leading Route entries are the proxy's
  own (`own_routes`).
* **Socket references** (`socket_ref`): how the proxy names one of its
  sockets inside the messages it sends (its Via and its Record-Route), so
  that a response or an in-dialog request handled by any process finds the
  socket again: ``s<slot>`` for a dynamic socket (slots are the sockets'
  ids across processes), ``t<tag>`` for a static socket with a tag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sipsock.addresses import bracket, normal_ip, parse_ip, same_ip, unbracket
from sipsock.sip import MAGIC_COOKIE, Request, Via, default_port, stateless_branch
from sipsock.sip.grammar import canonical_name, is_token, split_values
from sipsock.sockdef import PROTOS, SocketDef

#: Max-Forwards put into a request that has none (RFC 3261 16.6 step 3).
DEFAULT_MAX_FORWARDS: Final = 70
#: Methods that create a dialog: the ones that get a Record-Route.
DIALOG_METHODS: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
#: Methods that follow the route of the INVITE they belong to.
FOLLOW_INVITE: Final = frozenset({"ACK", "CANCEL"})
#: The value of ``destination`` that means "where the Request-URI points".
REQUEST_URI: Final = "request-uri"
#: Via parameter naming the socket a request came in on (and its stream peer port).
VIA_PARAM: Final = "sipsock-in"
#: Record-Route URI parameter naming the socket of that entry.
ROUTE_PARAM: Final = "sipsock"
#: Keys of one ``[[proxy.route]]`` table.
ROUTE_KEYS: Final = frozenset({"in_tag", "uri_host", "methods", "destination", "out_tag"})

_TAG_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_match_uri = re.compile(
    r"(?i)(sips?):(?:([^@<>\s]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?"
    r"((?:;[^;?<>\s]*)*)(?:\?[^<>\s]*)?"
).fullmatch
#: The proxy's branch: magic cookie, 24 hex digits of transaction id, '.', 10 of loop key.
_match_own_branch = re.compile(rf"{MAGIC_COOKIE}[0-9a-f]{{24}}\.([0-9a-f]{{10}})").fullmatch
_find_branch = re.compile(r"(?i);\s*branch\s*=\s*([^;,\s]+)").findall
_find_tag = re.compile(r"(?i);\s*tag\s*=\s*([^;\s]+)").search
_LOOP_HEADERS: Final = frozenset({"proxy-require", "proxy-authorization"})


class RouteError(ValueError):
    """A route table that cannot be used: ``key`` names the entry, ``reason`` says why.

    ``str(error)`` is ``"key: reason"`` (``reason`` alone when no key applies).
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


# --- URIs and destinations ----------------------------------------------------------


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

    Raises `RouteError` (empty key) for anything else, including other schemes.
    """
    value = text.strip()
    if "<" in value:
        start, end = value.find("<"), value.find(">")
        if end < start:
            raise RouteError("", f"{_show(text)} has an unclosed '<'")
        value = value[start + 1 : end].strip()
    match = _match_uri(value)
    if match is None:
        raise RouteError("", f"{_show(text)} is not a sip: or sips: URI")
    scheme, user, host, port_text, rest = match.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port <= 65535:
            raise RouteError("", f"port {port} of {_show(text)} is out of range (1-65535)")
    if host.startswith("["):
        host = unbracket(host)
        address = parse_ip(host)
        if address is None or address.version != 6:
            raise RouteError("", f"{_show(host)} is not an IPv6 address")
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

    Raises `RouteError` (empty key) for a transport sipsock does not speak.
    """
    transport = uri.param("transport")
    if transport is not None:
        transport = transport.lower()
        if uri.scheme == "sips" and transport in ("tcp", "ws"):
            transport = "tls" if transport == "tcp" else "wss"
        if transport not in PROTOS:
            raise RouteError("", f"transport {transport!r} is not one of {', '.join(PROTOS)}")
    elif uri.scheme == "sips":
        transport = "tls"
    host = uri.param("maddr") or uri.host
    return Destination(unbracket(host), uri.port, transport)


# --- routes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """One ``[[proxy.route]]``: what it matches and where it sends.

    A request matches when every matcher that is set matches: ``in_tag`` the
    receiving socket's tag, ``uri_host`` the Request-URI host (exact,
    case-insensitive; ``*.example.com`` matches every subdomain), ``methods``
    the method (a route for INVITE also takes its CANCEL and ACK).
    ``destination`` None means the Request-URI. ``out_tag`` names the
    outgoing socket; None means the receiving socket when its protocol fits,
    else the first open socket of the destination's protocol. ``number``
    counts the routes from 1, in file order.
    """

    number: int
    destination: Destination | None = None
    in_tag: str | None = None
    uri_host: str | None = None
    methods: frozenset[str] = frozenset()
    out_tag: str | None = None

    def matches(self, in_tag: str | None, uri_host: str | None, method: str) -> bool:
        """Whether a request with these facts takes this route."""
        if self.in_tag is not None and self.in_tag != in_tag:
            return False
        if self.uri_host is not None and not host_matches(self.uri_host, uri_host):
            return False
        if self.methods and method not in self.methods:
            return method in FOLLOW_INVITE and "INVITE" in self.methods
        return True

    def describe(self) -> str:
        """``route N`` with what it matches, for logs."""
        parts = [f"route {self.number}"]
        if self.in_tag is not None:
            parts.append(f"in_tag={self.in_tag}")
        if self.uri_host is not None:
            parts.append(f"uri_host={self.uri_host}")
        if self.methods:
            parts.append(f"methods={','.join(sorted(self.methods))}")
        return " ".join(parts)


def parse_route(table: object, number: int) -> ProxyRoute:
    """Check one ``[[proxy.route]]`` table; raises `RouteError` naming the key."""
    if isinstance(table, ProxyRoute):
        return table
    if not isinstance(table, Mapping):
        raise RouteError("", f"must be a table, not {_show(table)}")
    for key in table:
        if key not in ROUTE_KEYS:
            raise RouteError(str(key), f"unknown key (known: {', '.join(sorted(ROUTE_KEYS))})")
    if "destination" not in table:
        raise RouteError(
            "destination",
            f"missing (a SIP URI such as sip:10.0.0.2:5060;transport=tcp, or {REQUEST_URI!r})",
        )
    destination_text = _string(table, "destination")
    destination: Destination | None = None
    if destination_text.lower() != REQUEST_URI:
        try:
            destination = destination_of(parse_uri(destination_text))
        except RouteError as error:
            raise RouteError(
                "destination", f"{error.reason} (write a SIP URI or {REQUEST_URI!r})"
            ) from None
    methods: frozenset[str] = frozenset()
    if "methods" in table:
        raw = table["methods"]
        if not isinstance(raw, list) or not raw:
            raise RouteError(
                "methods", f"must be a non-empty list of method names, not {_show(raw)}"
            )
        for item in raw:
            if not isinstance(item, str) or not is_token(item):
                raise RouteError("methods", f"{_show(item)} is not a SIP method name")
        methods = frozenset(item.upper() for item in raw)
    uri_host = None
    if "uri_host" in table:
        uri_host = _string(table, "uri_host")
        try:
            uri_host = _canonical_host(uri_host, wildcard=True)
        except ValueError as error:
            raise RouteError("uri_host", str(error)) from None
    return ProxyRoute(
        number=number,
        destination=destination,
        in_tag=_tag(table, "in_tag"),
        uri_host=uri_host,
        methods=methods,
        out_tag=_tag(table, "out_tag"),
    )


def parse_routes(tables: Iterable[object]) -> tuple[ProxyRoute, ...]:
    """Check a list of route tables; the `RouteError` key starts with the route number."""
    routes: list[ProxyRoute] = []
    for number, table in enumerate(tables, start=1):
        try:
            routes.append(parse_route(table, number))
        except RouteError as error:
            key = f"{number}: {error.key}" if error.key else str(number)
            raise RouteError(key, error.reason) from None
    return tuple(routes)


def find_route(
    routes: Sequence[ProxyRoute], in_tag: str | None, uri_host: str | None, method: str
) -> ProxyRoute | None:
    """The first route the request matches, in order; None when none does."""
    for route in routes:
        if route.matches(in_tag, uri_host, method):
            return route
    return None


def host_matches(pattern: str, host: str | None) -> bool:
    """Whether ``host`` is ``pattern`` (canonical form), or under ``*.domain``."""
    if host is None:
        return False
    try:
        host = _canonical_host(host)
    except ValueError:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def request_uri_host(uri: str) -> str | None:
    """The host of a SIP Request-URI (None for another scheme or a malformed URI)."""
    try:
        return parse_uri(uri).host
    except RouteError:
        return None


# --- forwarding rules ------------------------------------------------------------------


def next_max_forwards(value: int | None) -> int | None:
    """Max-Forwards of the forwarded copy: one less, 70 when absent; None means 483."""
    if value is None:
        return DEFAULT_MAX_FORWARDS
    if value <= 0:
        return None
    return value - 1


@dataclass(slots=True)
class HeaderScan:
    """The header fields the proxy reads, collected in one pass over a request.

    ``vias`` are the Via field values as they are (one may hold several
    comma-separated values), ``routes`` every Route value (split), and
    ``loop_fields`` the Proxy-Require and Proxy-Authorization fields.
    """

    vias: list[str]
    routes: list[str]
    loop_fields: list[str]


def scan_headers(request: Request) -> HeaderScan:
    """Collect the `HeaderScan` of ``request``."""
    vias: list[str] = []
    routes: list[str] = []
    loop_fields: list[str] = []
    for name, value in request.headers:
        key = canonical_name(name)
        if key == "via":
            vias.append(value)
        elif key == "route":
            routes += split_values(value)
        elif key in _LOOP_HEADERS:
            loop_fields.append(f"{key}:{value}")
    return HeaderScan(vias, routes, loop_fields)


def loop_key(request: Request, secret: str, scan: HeaderScan | None = None) -> str:
    """The part of the proxy's branch that stays equal while a request loops.

    A salted hash of what decides where the request goes and what identifies
    it (RFC 3261 16.6 step 8, without the top Via, which changes every hop,
    and without the To tag, which the ACK of a non-2xx answer adds): the
    Request-URI, the From tag, Call-ID, the CSeq number, every Route value as
    received, Proxy-Require and Proxy-Authorization.
    """
    scan = scan or scan_headers(request)
    from_tag = _find_tag(request.get("from") or "")
    parts = [
        request.uri,
        from_tag.group(1) if from_tag else "",
        request.get("call-id") or "",
        str(request.cseq[0]),
        "\x1f".join(scan.routes),
        "\x1f".join(scan.loop_fields),
    ]
    data = "\x00".join(parts).encode("utf-8", "surrogateescape")
    key = secret.encode("utf-8", "surrogateescape")[:64]
    return hashlib.blake2b(data, digest_size=5, key=key).hexdigest()


def proxy_branch(request: Request, secret: str, scan: HeaderScan | None = None) -> str:
    """The branch of the proxy's Via: same for retransmissions, CANCEL and non-2xx ACK.

    ``z9hG4bK`` + the stateless transaction id of `stateless_branch` + ``.``
    + `loop_key`, so a request that comes back unchanged is recognised.
    """
    return f"{stateless_branch(request, secret)}.{loop_key(request, secret, scan)}"


def is_own_branch(branch: str | None) -> bool:
    """Whether a branch has the shape `proxy_branch` gives."""
    return branch is not None and _match_own_branch(branch) is not None


def is_loop(request: Request, secret: str, scan: HeaderScan | None = None) -> bool:
    """Whether a Via of this proxy (same secret) holds this request's loop key."""
    scan = scan or scan_headers(request)
    key: str | None = None
    for value in scan.vias:
        for branch in _find_branch(value):
            match = _match_own_branch(branch)
            if match is None:
                continue
            if key is None:
                key = loop_key(request, secret, scan)
            if match.group(1) == key:
                return True
    return False


def forward_copy(
    request: Request,
    *,
    via: str,
    record_route: Sequence[str] = (),
    max_forwards: int,
    drop_routes: int = 0,
) -> Request:
    """The copy of ``request`` the proxy sends, built in one pass over the headers.

    ``via`` goes on top of the Via values and ``record_route`` (topmost
    first) on top of the Record-Route values; Max-Forwards becomes
    ``max_forwards`` (added when absent); the first ``drop_routes`` Route
    values are left out. Everything else is kept in order, body included.
    """
    headers: list[tuple[str, str]] = []
    via_done = not via
    record_done = not record_route
    max_forwards_done = False
    after_via = -1
    dropping = drop_routes
    for name, value in request.headers:
        key = canonical_name(name)
        if key == "via" and not via_done:
            headers.append(("Via", via))
            via_done = True
            after_via = len(headers)
        elif key == "record-route" and not record_done:
            headers += [("Record-Route", entry) for entry in record_route]
            record_done = True
        elif key == "max-forwards":
            if not max_forwards_done:
                headers.append((name, str(max_forwards)))
                max_forwards_done = True
            continue
        elif key == "route" and dropping:
            values = split_values(value)
            kept = values[dropping:]
            dropping = max(0, dropping - len(values))
            if kept:
                headers.append((name, ", ".join(kept)))
            continue
        headers.append((name, value))
    if not via_done:
        headers.insert(0, ("Via", via))
        after_via = 1
    if not record_done:
        headers[after_via:after_via] = [("Record-Route", entry) for entry in record_route]
    if not max_forwards_done:
        headers.append(("Max-Forwards", str(max_forwards)))
    return Request(request.method, request.uri, headers, request.body, request.version)


# --- socket references ----------------------------------------------------------------


def socket_ref(sdef: SocketDef, slot: int | None) -> str | None:
    """How the proxy names a socket in its messages: ``s<slot>``, ``t<tag>`` or None.

    None for a static socket without a tag: the proxy then falls back to
    the first open socket of the protocol (give static sockets a tag).
    """
    if slot is not None:
        return f"s{slot}"
    if sdef.tag is not None:
        return f"t{sdef.tag}"
    return None


def parse_socket_ref(text: str | None) -> str | int | None:
    """``s3`` -> slot 3, ``tcore`` -> tag ``core``; None for anything else.

    The result is what `MessageContext.find_socket` takes.
    """
    if not text:
        return None
    kind, rest = text[0], text[1:]
    if kind == "s" and rest.isascii() and rest.isdigit() and len(rest) <= 9:
        return int(rest)
    if kind == "t" and _TAG_RE.fullmatch(rest):
        return rest
    return None


def describe_ref(ref: str | int) -> str:
    """``socket tag b`` or ``socket in slot 3``, for reason phrases and logs."""
    return f"socket tag {ref}" if isinstance(ref, str) else f"socket in slot {ref}"


@dataclass(frozen=True, slots=True)
class ViaMarker:
    """What the proxy's own Via says about the request it forwarded.

    ``ref`` names the socket the request came in on (None: not known, use
    the first socket of the response's transport); ``peer_port`` is the
    source port of the stream connection the request came on (None for UDP).
    """

    ref: str | int | None
    peer_port: int | None = None


def proxy_via(
    out: SocketDef, branch: str, inbound: str | None, peer_port: int | None = None
) -> str:
    """The Via value the proxy puts on top of a request it forwards from ``out``.

    Sent-by is the outgoing socket's advertised address when it has one, else
    its own; ``sipsock-in`` carries the receiving socket's reference and, for
    a stream, the peer's source port (where the response must go back).
    """
    host = out.public_host
    value = f"SIP/2.0/{out.via_transport} {host}:{out.public_port};branch={branch}"
    marker = (inbound or "") + (f".{peer_port}" if peer_port is not None else "")
    return f"{value};{VIA_PARAM}={marker}" if marker else value


def via_marker(via: Via) -> ViaMarker:
    """Read the ``sipsock-in`` parameter of the proxy's own Via."""
    text = via.param(VIA_PARAM) or ""
    ref_text, _, port_text = text.partition(".")
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else None
    if port is not None and not 0 < port <= 65535:
        port = None
    return ViaMarker(parse_socket_ref(ref_text), port)


def is_own_via(via: Via, sdef: SocketDef) -> bool:
    """Whether ``via`` is one this proxy put on a request sent from ``sdef`` (RFC 3261 16.11).

    The branch has the proxy's shape and the sent-by is the socket's
    advertised address or its own address (the port defaulting by transport).
    """
    if not is_own_branch(via.branch):
        return False
    port = via.port or default_port(via.transport)
    return is_socket_address(sdef, via.host, port)


def is_socket_address(sdef: SocketDef, host: str, port: int) -> bool:
    """Whether ``host:port`` is the socket's advertised address or its own address."""
    if port == sdef.public_port and same_host(host, sdef.public_host):
        return True
    return port == sdef.port and same_host(host, sdef.host)


def same_host(first: str, second: str) -> bool:
    """Host equality: case-insensitive, brackets ignored, IP addresses compared as numbers."""
    a, b = unbracket(first).lower(), unbracket(second).lower()
    return a == b or same_ip(a, b, zone="keep")


def route_entry(sdef: SocketDef, ref: str | None) -> str:
    """A Record-Route value for a socket: its public address, ``lr`` and its reference."""
    transport = "" if sdef.proto == "udp" else f";transport={sdef.proto}"
    marker = f";{ROUTE_PARAM}={ref}" if ref else ""
    return f"<sip:{sdef.public_host}:{sdef.public_port}{transport};lr{marker}>"


def record_route_values(
    inbound: SocketDef, inbound_ref: str | None, out: SocketDef, out_ref: str | None
) -> list[str]:
    """The Record-Route values to add on top, topmost first (RFC 3261 16.6.4, RFC 5658).

    One entry for the receiving socket when both legs use the same transport
    and public address; else two: the outgoing socket's (the one the next
    hop sees first), then the receiving socket's.
    """
    same = (
        inbound.proto == out.proto
        and inbound.public_port == out.public_port
        and same_host(inbound.public_host, out.public_host)
    )
    if same:
        return [route_entry(inbound, inbound_ref)]
    return [route_entry(out, out_ref), route_entry(inbound, inbound_ref)]


def wants_record_route(request: Request) -> bool:
    """Whether a request may create a dialog: a dialog method and no To tag."""
    if request.method not in DIALOG_METHODS:
        return False
    return _find_tag(request.get("to") or "") is None


@dataclass(frozen=True, slots=True)
class OwnRoutes:
    """The leading Route entries that are this proxy's own (RFC 3261 16.4).

    ``count`` entries (0, 1 or 2: one per Record-Route the proxy added) are
    to be removed; ``ref`` names the socket of the last of them, the socket
    to send from (None: the receiving socket).
    """

    count: int = 0
    ref: str | int | None = None


def own_routes(
    routes: Sequence[str],
    receiving: SocketDef,
    lookup: Callable[[str | int], SocketDef | None],
) -> OwnRoutes:
    """Which leading ``routes`` name this proxy.

    An entry is the proxy's own when its host and port are the receiving
    socket's (advertised or own) address, or when its ``sipsock`` parameter
    names an open socket (``lookup`` gives its definition) whose address it
    carries. At most two entries are taken: the ones a double Record-Route
    added; a further entry of ours is handled by the next pass.
    """
    count = 0
    ref: str | int | None = None
    for value in routes[:2]:
        try:
            uri = parse_uri(value)
        except RouteError:
            break
        transport = (uri.param("transport") or ("tls" if uri.scheme == "sips" else "udp")).lower()
        port = uri.port or default_port(transport)
        entry_ref = parse_socket_ref(uri.param(ROUTE_PARAM))
        named = lookup(entry_ref) if entry_ref is not None else None
        if named is not None and is_socket_address(named, uri.host, port):
            ref = entry_ref
        elif count == 0 and is_socket_address(receiving, uri.host, port):
            ref = None
        else:
            break
        count += 1
    return OwnRoutes(count, ref)


# --- helpers ---------------------------------------------------------------------------


def _show(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text) if isinstance(value, str) else text


def _string(table: Mapping[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value:
        raise RouteError(key, f"must be a non-empty string, not {_show(value)}")
    return value


def _tag(table: Mapping[str, Any], key: str) -> str | None:
    if key not in table:
        return None
    value = _string(table, key)
    if not _TAG_RE.fullmatch(value):
        raise RouteError(key, f"{_show(value)} is not a tag (letters, digits, '_' and '-')")
    return value


def _canonical_host(host: str, *, wildcard: bool = False) -> str:
    """Lower-case name or canonical IP address; ValueError naming the problem."""
    text = unbracket(host.strip())
    if "%" in text or not text.isascii():
        raise ValueError(f"{_show(host)} is not a host name or an IP address without a zone id")
    address = normal_ip(text)
    if address is not None:
        return address
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if wildcard and labels and labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"{_show(host)} is not a host name or an IP address")
    return name
