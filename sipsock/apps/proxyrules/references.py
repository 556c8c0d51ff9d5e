"""How the proxy names its sockets in the messages it sends, and finds them again.

Pure. A socket reference (`socket_ref`) is ``s<slot>`` for a dynamic socket
(slots are the sockets' ids across processes) or ``t<tag>`` for a static
socket with a tag; it rides in the proxy's Via (``sipsock-in``, with the
stream peer's port: `proxy_via`, `via_marker`) and Record-Route entries
(``sipsock``: `record_route_values`), so that a response or an in-dialog
request handled by any process finds the socket again (`own_routes`,
`is_own_via`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from sipsock.addresses import same_ip, unbracket
from sipsock.apps.proxyrules.forwarding import is_own_branch
from sipsock.config.proxy import TAG_RE
from sipsock.sip import Via, default_port
from sipsock.sip.memo import Memo
from sipsock.sip.uri import UriError, parse_uri
from sipsock.sockdef import SocketDef

#: Via parameter naming the socket a request came in on (and its stream peer port).
VIA_PARAM: Final = "sipsock-in"
#: Record-Route URI parameter naming the socket of that entry.
ROUTE_PARAM: Final = "sipsock"


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
    if kind == "t" and TAG_RE.fullmatch(rest):
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
    return marker_of(via.param(VIA_PARAM) or "")


#: ``sipsock-in`` values to what they say (a few sockets, a stream peer port
#: each; bounded like every memo).
_MARKERS: Final[Memo[str, ViaMarker]] = Memo(max_entries=4096, max_item=64)


def marker_of(text: str) -> ViaMarker:
    """What a ``sipsock-in`` value says (`via_marker`), remembered (bounded)."""
    known = _MARKERS.get(text)
    if known is None:
        ref_text, _, port_text = text.partition(".")
        port = int(port_text) if port_text.isascii() and port_text.isdigit() else None
        if port is not None and not 0 < port <= 65535:
            port = None
        known = _MARKERS.remember(text, ViaMarker(parse_socket_ref(ref_text), port), len(text))
    return known


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
    if first == second:  # the usual case: the host as this proxy wrote it
        return True
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


@dataclass(slots=True, init=False)
class OwnRoutes:
    """The leading Route entries that are this proxy's own (RFC 3261 16.4).

    ``count`` entries (0, 1 or 2: one per Record-Route the proxy added) are
    to be removed; ``ref`` names the socket of the last of them, the socket
    to send from (None: the receiving socket).
    """

    count: int
    ref: str | int | None

    def __init__(self, count: int = 0, ref: str | int | None = None) -> None:
        # Written out, not generated: see `sipsock.apps.proxyrules.forwarding.HeaderScan`.
        self.count = count
        self.ref = ref


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
        entry = _route_entry_of(value)
        if entry is None:
            break
        host, port, entry_ref = entry
        named = lookup(entry_ref) if entry_ref is not None else None
        if named is not None and is_socket_address(named, host, port):
            ref = entry_ref
        elif count == 0 and is_socket_address(receiving, host, port):
            ref = None
        else:
            break
        count += 1
    return OwnRoutes(count, ref)


#: A Route entry as `own_routes` reads it: host, port (defaulted), ``sipsock`` reference.
RouteFacts = tuple[str, int, "str | int | None"]
#: Route entries seen to their facts (None: not a SIP URI). Every in-dialog
#: request of every call carries the same few entries of this proxy.
_ROUTE_FACTS: Final[Memo[str, RouteFacts | None]] = Memo(max_bytes=512 * 1024, max_item=512)


def _route_entry_of(value: str) -> RouteFacts | None:
    if value in _ROUTE_FACTS:
        return _ROUTE_FACTS[value]
    try:
        uri = parse_uri(value)
    except UriError:
        facts: RouteFacts | None = None
    else:
        transport = (uri.param("transport") or ("tls" if uri.scheme == "sips" else "udp")).lower()
        port = uri.port or default_port(transport)
        facts = (uri.host, port, parse_socket_ref(uri.param(ROUTE_PARAM)))
    return _ROUTE_FACTS.remember(value, facts, 2 * len(value))
