"""Where a response goes from the usual next Via, read in one pass (RFC 3261 18.2.2, RFC 3581).

`unreliable_hop` gives what ``route_response(parse_via(text))`` decides for
a plain Via value (``SIP/2.0/UDP host:port;name=value;name``: no blank, no
quote, no IPv6) over an unreliable transport without ``maddr``, the Via most
responses a proxy forwards carry. The parameters are scanned once instead of
once per parameter asked for; every other Via is left to `parse_via` and
`route_response`.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from sipsock.apps.proxyrules.viatemplate import TemplateRule
from sipsock.sip.grammar import TOKEN_CHARS, parse_number
from sipsock.sip.routing import RELIABLE_TRANSPORTS, default_port, is_address_host

_T = f"[{TOKEN_CHARS}]+"
#: The plain Via `parse_via` reads with its own plain pattern: transport,
#: host, port digits and the parameters (no ``;`` inside a value).
_match_plain_via: Final = re.compile(
    rf"{_T}/{_T}/({_T}) ([A-Za-z0-9.\-]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*)"
).fullmatch
#: The parameters `route_response` reads from an unreliable transport's Via.
_ROUTING_PARAMS: Final = frozenset({"received", "rport", "maddr"})


class ResponseHop(NamedTuple):
    """The Via transport (upper case) and where `route_response` sends the response."""

    transport: str
    host: str
    port: int
    resolve: bool


def unreliable_hop(via: str) -> ResponseHop | None:
    """``route_response(parse_via(via))`` for a plain unreliable Via without ``maddr``.

    None for any other Via (reliable transport, ``maddr`` with a value, a
    spelling the plain pattern does not cover, a port `parse_via` refuses):
    the caller parses it.
    """
    match = _match_plain_via(via)
    if match is None:
        return None
    transport_text, host, port_text, params = match.groups()
    transport = transport_text.upper()
    if transport in RELIABLE_TRANSPORTS:
        return None
    if port_text is None:
        port = default_port(transport)
    else:
        port = int(port_text)
        if not 0 < port <= 65535:
            return None
    found: dict[str, str] = {}
    if params:
        for param in params[1:].split(";"):
            key, _, value = param.partition("=")
            key = key.lower()
            if key in _ROUTING_PARAMS and key not in found:
                found[key] = value
    if found.get("maddr"):
        return None
    rport_text = found.get("rport")
    if rport_text:
        rport = parse_number(rport_text)
        if rport is not None and 0 < rport <= 65535:
            port = rport
    received = found.get("received")
    target = received or host
    return ResponseHop(transport, target, port, not is_address_host(target))


#: `unreliable_hop`, remembered per Via template (every peer's Via but its branch).
next_hop: TemplateRule[ResponseHop | None] = TemplateRule(
    unreliable_hop, lambda _: None, lambda answer, _: answer
)
