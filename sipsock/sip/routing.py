"""``route_response``: where a response goes (RFC 3261 18.2.2 with RFC 3581)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sipsock.addresses import is_ip, parse_ip
from sipsock.sip.memo import Memo
from sipsock.sip.message import Response
from sipsock.sip.via import Via

#: Transports on which a response goes back over the request's connection.
RELIABLE_TRANSPORTS: Final = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
#: Transports on which the server cannot open a connection to the client (RFC 7118).
CONNECT_BACK_IMPOSSIBLE: Final = frozenset({"WS", "WSS"})
DEFAULT_PORTS: Final[dict[str, int]] = {"TLS": 5061, "TLS-SCTP": 5061, "WS": 80, "WSS": 443}
SIP_PORT: Final = 5060


def default_port(transport: str) -> int:
    """The default port of a Via transport (5060, 5061 for TLS, 80 WS, 443 WSS)."""
    return DEFAULT_PORTS.get(transport.upper(), SIP_PORT)


@dataclass(frozen=True, slots=True)
class ResponseRoute:
    """Where to send a response.

    ``reuse_connection``: write it on the connection the request came in on
    (``host``/``port`` then say where a new connection would go).
    ``resolve``: ``host`` is a domain name to look up with RFC 3263 section 5
    (SRV, then A/AAAA) instead of an address to send to directly.
    ``ttl``: send to a multicast ``maddr`` with this TTL.
    ``drop``: nowhere to send it (WS/WSS connection gone); discard it.
    """

    transport: str
    host: str
    port: int
    reuse_connection: bool = False
    resolve: bool = False
    ttl: int | None = None
    drop: bool = False


#: Hosts of Vias seen to whether they are addresses (responses of one peer repeat them).
_ADDRESSES: Final[Memo[str, bool]] = Memo(max_bytes=256 * 1024, max_item=256)


def is_address_host(host: str) -> bool:
    """Whether a Via host is an IP address, not a name to resolve (remembered per host)."""
    known = _ADDRESSES.get(host)
    if known is None:
        known = _ADDRESSES.remember(host, is_ip(host, zone="keep"), len(host))
    return known


def _is_multicast(host: str) -> bool:
    address = parse_ip(host, zone="keep")
    return address is not None and address.is_multicast


def route_response(response: Response | Via, *, connection_open: bool = False) -> ResponseRoute:
    """Decide where a response goes from its top Via (RFC 3261 18.2.2, RFC 3581 4).

    ``connection_open`` says whether the connection the request arrived on (a
    reliable transport) is still open.  Rules, in order:

    1. reliable transport, connection open: that connection;
    2. reliable transport, connection gone: ``received`` (else the sent-by
       host) with the sent-by port or the transport default; WS/WSS: drop;
    3. ``maddr``: that address, sent-by port or 5060, ``ttl`` (default 1)
       when multicast;
    4. unreliable with ``received``: that address, at ``rport`` when it has a
       value, else the sent-by port or the default;
    5. otherwise the sent-by host (resolved per RFC 3263 when a name) at
       ``rport``, the sent-by port or the default.
    """
    via = response.top_via if isinstance(response, Response) else response
    transport = via.transport
    port = via.port or default_port(transport)
    received = via.received
    if transport in RELIABLE_TRANSPORTS:
        host = received or via.host
        if connection_open:
            return ResponseRoute(transport, host, port, reuse_connection=True)
        if transport in CONNECT_BACK_IMPOSSIBLE:
            return ResponseRoute(transport, host, port, drop=True)
        return ResponseRoute(transport, host, port, resolve=not is_address_host(host))
    maddr = via.maddr
    if maddr:
        ttl = (via.ttl or 1) if _is_multicast(maddr) else None
        return ResponseRoute(
            transport, maddr, via.port or SIP_PORT, resolve=not is_address_host(maddr), ttl=ttl
        )
    rport = via.rport
    if isinstance(rport, bool):
        rport = None
    if received:
        return ResponseRoute(
            transport, received, rport or port, resolve=not is_address_host(received)
        )
    return ResponseRoute(transport, via.host, rport or port, resolve=not is_address_host(via.host))
