"""IP address literals: one reading, one normal form, zone ids refused unless asked."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.addresses import (
    AddressError,
    bracket,
    is_ip,
    join_host_port,
    normal_ip,
    parse_ip,
    same_ip,
    split_host_port,
    unbracket,
)

ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
NAMES = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PORTS = st.integers(1, 65535)


def spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """Ways the same address is written in headers, rows and peers."""
    texts = [str(address), address.compressed, address.exploded]
    if address.version == 6:
        texts += [f"[{text}]" for text in texts] + [address.exploded.upper()]
    return texts


@given(ADDRESSES)
def test_every_spelling_of_an_address_has_the_one_normal_form(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    for text in spellings(address):
        assert normal_ip(text) == address.compressed
        assert parse_ip(text) == address
        assert is_ip(text)
        assert same_ip(text, address.compressed)


@given(NAMES)
def test_names_are_not_addresses(name: str) -> None:
    assert parse_ip(name) is None
    assert normal_ip(name) is None
    assert not is_ip(name)
    assert not same_ip(name, name)


@pytest.mark.parametrize(
    "text",
    ["999.1.1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.", "::1::", "[1.2.3.4",
     "1:2:3:4:5:6:7:8:9", "", "[]", "12345"],
)  # fmt: skip
def test_texts_that_only_look_like_addresses_are_not_addresses(text: str) -> None:
    assert not is_ip(text)
    assert normal_ip(text) is None


def test_zone_ids_are_refused_unless_kept_or_dropped() -> None:
    assert parse_ip("fe80::1%eth0") is None
    assert parse_ip("[fe80::1%eth0]") is None
    kept = parse_ip("fe80::1%eth0", zone="keep")
    assert kept is not None and kept.compressed == "fe80::1%eth0"
    assert normal_ip("fe80::1%eth0", zone="drop") == "fe80::1"
    assert not same_ip("fe80::1%eth0", "fe80::1%eth1", zone="keep")
    assert same_ip("fe80::1%eth0", "fe80::1%eth1", zone="drop")


@given(st.one_of(ADDRESSES.map(str), NAMES))
def test_bracket_and_unbracket_are_inverse(host: str) -> None:
    assert unbracket(bracket(host)) == host
    assert bracket(bracket(host)) == bracket(host)
    assert bracket(host).startswith("[") == (":" in host)


@given(st.one_of(ADDRESSES.map(str), NAMES), st.one_of(st.none(), PORTS))
def test_split_host_port_reads_what_join_host_port_writes(host: str, port: int | None) -> None:
    text = bracket(host) if port is None else join_host_port(host, port)
    assert split_host_port(text) == (host, port)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("::1", "IPv6 addresses must be written in brackets"),
        ("[::1", "without its closing ']'"),
        ("[]:5060", "empty IPv6 address"),
        ("[10.0.0.1]:5060", "brackets are for IPv6 addresses only"),
        ("[::1]x", "unexpected text after the IPv6 address"),
        (":5060", "no host"),
        ("10.0.0.1:0", "port 0 is out of range (1-65535)"),
        ("10.0.0.1:70000", "port 70000 is out of range (1-65535)"),
        ("10.0.0.1:5o60", "port '5o60' is not a number from 1 to 65535"),
        ("10.0.0.1:", "port '' is not a number from 1 to 65535"),
    ],
)
def test_split_host_port_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(AddressError) as raised:
        split_host_port(text)
    assert reason in raised.value.reason
