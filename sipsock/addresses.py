"""IP address literals: the one copy of how sipsock reads, compares and writes them.

Pure (stdlib only). A *host* here is what appears in a socket definition, a
SIP header, a URI or a peer address: an IPv4 address, an IPv6 address with
or without its brackets, or a name. These functions say whether it is an
address and give its normal form (`ipaddress`'s compressed spelling, no
brackets); names are left to the callers (each has its own rule for them).

Zone ids (``fe80::1%eth0``) are refused by default: an address written into
a SIP header, a socket definition or a setting must mean the same on every
host, and a zone id does not. Addresses the kernel gives (a peer's address)
may carry one: callers that read those pass ``zone="keep"`` (the zone is
part of the address, as for the kernel) or ``zone="drop"`` (the address
without it).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What to do with a zone id: the text is then not an address, or the zone is kept, or dropped.
Zone: TypeAlias = Literal["reject", "keep", "drop"]

_PORT_RE: Final = re.compile(r"[0-9]{1,5}")


class AddressError(ValueError):
    """A ``host[:port]`` text that cannot be read; ``reason`` says why, for a human."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unbracket(host: str) -> str:
    """``host`` without the brackets of an IPv6 literal (``[::1]`` gives ``::1``)."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def bracket(host: str) -> str:
    """An IPv6 literal in brackets (as URIs, Via and ``host:port`` need); other hosts as given."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_ip(host: str, *, zone: Zone = "reject") -> IPAddress | None:
    """The IP address ``host`` spells (IPv6 with or without brackets), else None.

    None for a name, for anything that is not exactly an address
    (``999.1.1``, ``1.2.3``, ``01.2.3.4``), and for an address with a zone id
    unless ``zone`` says to keep or drop it.
    """
    text = unbracket(host)
    if "%" in text:
        if zone == "reject":
            return None
        if zone == "drop":
            text = text.partition("%")[0]
    # Straight to the one class that can read it: a failed ``ipaddress`` parse
    # costs microseconds (it builds an error message), and most hosts in SIP
    # traffic that are not addresses are names, which never get that far.
    try:
        if ":" in text:
            return ipaddress.IPv6Address(text)
        if text.replace(".", "").isdigit():
            return ipaddress.IPv4Address(text)
    except ValueError:
        return None
    return None


def is_ip(host: str, *, zone: Zone = "reject") -> bool:
    """Whether ``host`` is an IP address (see `parse_ip`), not a name."""
    return parse_ip(host, zone=zone) is not None


def normal_ip(host: str, *, zone: Zone = "reject") -> str | None:
    """The normal spelling of the address ``host`` (compressed, no brackets), else None."""
    address = parse_ip(host, zone=zone)
    return None if address is None else address.compressed


def same_ip(first: str, second: str, *, zone: Zone = "reject") -> bool:
    """Whether both hosts are IP addresses and the same one (``::1`` and ``[0::1]``)."""
    address = parse_ip(first, zone=zone)
    return address is not None and address == parse_ip(second, zone=zone)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets."""
    return f"{bracket(host)}:{port}"


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets) into the host (no brackets) and the port.

    The port is None when absent, else a number from 1 to 65535. Raises
    `AddressError` for a text that is neither: unclosed or misplaced
    brackets, an IPv6 address without brackets, a bad port, no host. The
    host itself is not checked (names and addresses are the caller's rule).
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError("IPv6 address without its closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if not host:
            raise AddressError("empty IPv6 address")
        if ":" not in host:
            raise AddressError("brackets are for IPv6 addresses only")
        if rest and not rest.startswith(":"):
            raise AddressError("unexpected text after the IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if port_text is not None and ":" in port_text:
            raise AddressError("IPv6 addresses must be written in brackets, e.g. udp:[::1]:5060")
    if not host:
        raise AddressError("no host")
    if port_text is None:
        return host, None
    if not _PORT_RE.fullmatch(port_text):
        raise AddressError(f"port {_show(port_text)} is not a number from 1 to 65535")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port {port} is out of range (1-65535)")
    return host, port


def _show(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = f"{text[:limit]}...({len(text)} characters)"
    return repr(text)
