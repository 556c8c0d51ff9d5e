"""`unreliable_hop`: the usual next Via read in one pass, as `route_response` decides."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules.responsehop import ResponseHop, unreliable_hop
from sipsock.sip import SipParseError, parse_via, route_response
from sipsock.sip.routing import RELIABLE_TRANSPORTS

_transports = st.sampled_from(["UDP", "udp", "Udp", "SCTP", "TCP", "tls", "WS", "x-y", "DTLS"])
_hosts = st.sampled_from(
    ["192.0.2.1", "host.example", "[2001:db8::1]", "2001:db8::1", "a_b", "", "H-1.EX", "01.2.3.4"]
)
_ports = st.sampled_from(["", ":5060", ":05060", ":0", ":65535", ":65536", ":99999", ": 5060"])
_params = st.sampled_from(
    [
        ";branch=z9hG4bK-abc",
        ";rport",
        ";rport=5070",
        ";RPORT=0",
        ";rport=65536",
        ";rport=007",
        ";rport=x",
        ";received=192.0.2.9",
        ";Received=peer.example",
        ";received",
        ";received=[2001:db8::9]",
        ";maddr=239.1.1.1",
        ";MADDR=192.0.2.8",
        ";maddr",
        ";ttl=3",
        ";receivedx=192.0.2.7",
        ';x="a;b"',
        " ;rport=5071",
        "; received = 192.0.2.6",
    ]
)


@settings(max_examples=800)
@example("UDP", "192.0.2.1", ":05060", [";rport", ";received=192.0.2.9"])
@example("UDP", "host.example", "", [";RPORT=0", ";rport=5070", ";Received=peer.example"])
@example("udp", "h", ":5060", [";received", ";received=192.0.2.9", ";rport=007"])
@example("UDP", "h", ":65536", [";rport=5070"])
@example("UDP", "h", "", [";maddr", ";rport=65536"])
@example("UDP", "h", "", [";MADDR=192.0.2.8"])
@example("SCTP", "h", "", [";rport=5070"])
@given(_transports, _hosts, _ports, st.lists(_params, max_size=5))
def test_the_hop_is_where_route_response_sends(
    transport: str, host: str, port: str, params: list[str]
) -> None:
    text = f"SIP/2.0/{transport} {host}{port}{''.join(params)}"
    hop = unreliable_hop(text)
    try:
        via = parse_via(text)
    except SipParseError:
        assert hop is None
        return
    if via.transport in RELIABLE_TRANSPORTS or via.maddr:
        assert hop is None
        return
    route = route_response(via)
    if hop is not None:
        assert hop == ResponseHop(via.transport, route.host, route.port, route.resolve)
    else:
        # Only a spelling the plain pattern leaves out is left to parse_via.
        assert " " in text.partition(" ")[2] or '"' in text or ":" in via.host or via.host == ""
