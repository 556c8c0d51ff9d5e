"""Every grammar rule and rejection reason of SocketDef."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.sockdef import (
    DEFAULT_PORTS,
    FLAG_NAMES,
    PROTOS,
    SocketDef,
    SocketDefError,
    collapse,
    parse_row,
    parse_row_id,
    parse_static,
)


def rejection(row: dict[str, Any]) -> SocketDefError:
    with pytest.raises(SocketDefError) as info:
        parse_row(7, **row)
    return info.value


@pytest.mark.parametrize(
    ("text", "proto", "host", "port"),
    [
        ("udp:10.0.0.1:5060", "udp", "10.0.0.1", 5060),
        ("UDP:10.0.0.1", "udp", "10.0.0.1", 5060),
        ("tcp:10.0.0.1", "tcp", "10.0.0.1", 5060),
        ("tls:10.0.0.1", "tls", "10.0.0.1", 5061),
        ("ws:10.0.0.1", "ws", "10.0.0.1", 80),
        ("WSS:10.0.0.1", "wss", "10.0.0.1", 443),
        ("udp:[::1]:5070", "udp", "::1", 5070),
        ("udp:[2001:DB8:0:0::1]", "udp", "2001:db8::1", 5060),
        ("tcp:Proxy.Example.COM:5080", "tcp", "proxy.example.com", 5080),
        ("udp:0.0.0.0:5060", "udp", "0.0.0.0", 5060),
        ("udp:10.0.0.1:65535", "udp", "10.0.0.1", 65535),
    ],
)
def test_socket_grammar_and_default_ports(text: str, proto: str, host: str, port: int) -> None:
    sdef = parse_row(1, text)
    assert (sdef.proto, sdef.host, sdef.port) == (proto, host, port)
    assert sdef.text == text


@pytest.mark.parametrize(
    ("socket", "reason"),
    [
        ("10.0.0.1:5060", "no protocol"),
        ("10.0.0.1", "no protocol"),
        ("proxy.example.com:5060", "no protocol"),
        ("[::1]:5060", "no protocol"),
        ("bin:10.0.0.1:5555", "protocol bin is not a SIP transport (use udp, tcp, tls, ws or wss)"),
        ("hep_udp:10.0.0.1:9060", "protocol hep_udp is not a SIP transport"),
        ("sctp:10.0.0.1:5060", "protocol sctp is not a SIP transport"),
        ("udp:10.0.0.1:0", "port 0 is out of range (1-65535)"),
        ("udp:10.0.0.1:70000", "port 70000 is out of range (1-65535)"),
        ("udp:10.0.0.1:50a", "is not a number from 1 to 65535"),
        ("udp:10.0.0.1:", "is not a number from 1 to 65535"),
        ("udp:::1:5060", "IPv6 addresses must be written in brackets"),
        ("udp:[::1:5060", "without its closing ']'"),
        ("udp:[10.0.0.1]:5060", "brackets are for IPv6 addresses only"),
        ("udp:[::g]:5060", "is not an IPv6 address"),
        ("udp:300.1.1.1:5060", "is not an IPv4 address"),
        ("udp:-bad-.example.com", "is not a host name"),
        ("udp:a_b.example.com", "is not a host name"),
        ("udp::5060", "no host"),
        ("udp:h\u00e9.example.com", "not ASCII"),
        ("udp:10.0.0.1 :5060", "contains blanks or control characters"),
        ("udp:10.0.0.1\x00:5060", "contains blanks or control characters"),
        ("udp:10.0.0.1';DROP TABLE sockets;--", "contains blanks or control characters"),
        ("udp:" + "a" * 120, "is not a host name"),
        ("udp:" + "a" * 130, "longer than 128 characters"),
        ("", "the socket column is empty"),
        ("   ", "the socket column is empty"),
    ],
)
def test_socket_rejections_name_row_column_and_reason(socket: str, reason: str) -> None:
    error = rejection({"socket": socket})
    assert error.row_id == 7
    assert error.column == "socket"
    assert reason in str(error)
    assert str(error).startswith("row 7: socket ")


def test_null_socket_is_rejected() -> None:
    assert str(rejection({"socket": None})) == "row 7: socket NULL: the socket column is empty"


def test_rejection_message_matches_the_documented_form() -> None:
    assert str(rejection({"socket": "bin:10.0.0.1:5555"})) == (
        "row 7: socket 'bin:10.0.0.1:5555': protocol bin is not a SIP transport "
        "(use udp, tcp, tls, ws or wss)"
    )


def test_long_values_are_shortened_in_messages() -> None:
    message = str(rejection({"socket": "udp:" + "x" * 300}))
    assert "(304 characters)" in message
    assert len(message) < 200


def test_non_text_column_is_rejected() -> None:
    assert "not text but int" in str(rejection({"socket": 5060}))
    assert "not ASCII text" in str(rejection({"socket": b"udp:\xff"}))


def test_trailing_padding_of_char_columns_is_ignored() -> None:
    sdef = parse_row(3, "udp:10.0.0.1:5060   ", "1.2.3.4  ", "edge  ", "frag  ", "16  ")
    assert sdef == parse_row(3, "udp:10.0.0.1:5060", "1.2.3.4", "edge", "frag", "16")
    assert sdef.text == "udp:10.0.0.1:5060"


@pytest.mark.parametrize(
    ("advertised", "host", "port"),
    [
        ("203.0.113.5", "203.0.113.5", 5070),
        ("203.0.113.5:5080", "203.0.113.5", 5080),
        ("[2001:db8::5]:5080", "[2001:db8::5]", 5080),
        ("[2001:db8::5]", "[2001:db8::5]", 5070),
        ("Edge.Example.com", "Edge.Example.com", 5070),
    ],
)
def test_advertised_defaults_port_and_keeps_spelling(advertised: str, host: str, port: int) -> None:
    sdef = parse_row(1, "udp:10.0.0.1:5070", advertised)
    assert (sdef.advertised_host, sdef.advertised_port) == (host, port)
    assert sdef.public_host == host
    assert sdef.public_port == port


@pytest.mark.parametrize(
    ("advertised", "reason"),
    [
        ("1.2.3.4:0", "out of range"),
        ("1.2.3.4:x", "is not a number"),
        ("::1", "IPv6 addresses must be written in brackets"),
        ("bad host", "contains blanks"),
    ],
)
def test_advertised_rejections(advertised: str, reason: str) -> None:
    error = rejection({"socket": "udp:10.0.0.1", "advertised": advertised})
    assert error.column == "advertised"
    assert reason in str(error)


def test_tag_grammar() -> None:
    assert parse_row(1, "udp:10.0.0.1", tag="carrier_A-1").tag == "carrier_A-1"
    error = rejection({"socket": "udp:10.0.0.1", "tag": "a b"})
    assert (error.column, error.reason) == (
        "tag",
        "a tag may hold only letters, digits, '_' and '-'",
    )


def test_flags_are_case_insensitive_and_blanks_ignored() -> None:
    sdef = parse_row(1, "udp:10.0.0.1", flags=" REUSE_PORT , frag,,Anycast ")
    assert sdef.flags == frozenset(FLAG_NAMES)
    assert sdef.flags_text() == "anycast,frag,reuse_port"
    assert sdef.reuse_port
    assert parse_row(1, "udp:10.0.0.1", flags=" , ").flags == frozenset()


def test_unknown_flag_is_rejected() -> None:
    error = rejection({"socket": "udp:10.0.0.1", "flags": "frag,nodelay"})
    assert error.column == "flags"
    assert "unknown flag 'nodelay'" in error.reason


@pytest.mark.parametrize(
    ("tos", "value"),
    [
        ("IPTOS_LOWDELAY", 16),
        ("iptos_throughput", 8),
        ("IPTOS_RELIABILITY", 4),
        ("IPTOS_MINCOST", 2),
        ("IPTOS_LOWCOST", 2),
        ("184", 184),
        ("0x10", 16),
        (46, 46),
        ("0", None),
        ("", None),
    ],
)
def test_tos_names_and_numbers(tos: object, value: int | None) -> None:
    assert parse_row(1, "udp:10.0.0.1", tos=tos).tos == value


@pytest.mark.parametrize(
    ("tos", "reason"),
    [
        ("256", "between 0 and 255"),
        ("-1", "not a TOS value"),
        ("IPTOS_FAST", "not a TOS value"),
        ("lowdelay", "not a TOS value"),
        ("x" * 40, "longer than 32 characters"),
    ],
)
def test_bad_tos_is_rejected_not_ignored(tos: str, reason: str) -> None:
    error = rejection({"socket": "udp:10.0.0.1", "tos": tos})
    assert error.column == "tos"
    assert reason in str(error)


def test_sameness_rule_ignores_text_and_row_id() -> None:
    first = parse_row(1, "UDP:10.0.0.1")
    second = parse_row(2, "udp:10.0.0.1:5060")
    assert first == second
    assert collapse([first, second]) == [first]
    assert collapse([first, second])[0].row_id == 1


@pytest.mark.parametrize(
    "change",
    [
        {"advertised": "1.2.3.4"},
        {"tag": "x"},
        {"flags": "frag"},
        {"tos": "16"},
        {"socket": "tcp:10.0.0.1"},
        {"socket": "udp:10.0.0.2"},
        {"socket": "udp:10.0.0.1:5061"},
    ],
)
def test_any_column_change_makes_another_socket(change: dict[str, str]) -> None:
    base: dict[str, Any] = {"socket": "udp:10.0.0.1"}
    assert parse_row(1, **base) != parse_row(1, **{**base, **change})


def test_endpoint_covers_proto_host_port_and_reuse_port_only() -> None:
    plain = parse_row(1, "udp:10.0.0.1:5060")
    assert plain.endpoint == parse_row(1, "udp:10.0.0.1", "9.9.9.9", "t", "frag", "16").endpoint
    assert plain.endpoint != parse_row(1, "udp:10.0.0.1", flags="reuse_port").endpoint


def test_mi_rendering_lists_only_set_keys_in_opensips_order() -> None:
    assert parse_row(1, "udp:10.0.0.1:5060").to_mi() == {"socket": "udp:10.0.0.1:5060"}
    full = parse_row(1, "tcp:[::1]", "[2001:db8::1]", "t1", "reuse_port,frag", "IPTOS_LOWDELAY")
    assert full.to_mi() == {
        "socket": "tcp:[::1]",
        "advertised": "[2001:db8::1]:5060",
        "tag": "t1",
        "flags": "frag,reuse_port",
        "tos": 16,
    }
    assert list(full.to_mi()) == ["socket", "advertised", "tag", "flags", "tos"]


def test_socket_text_and_transport() -> None:
    sdef = parse_row(1, "wss:[::1]")
    assert sdef.socket_text == "wss:[::1]:443"
    assert sdef.via_transport == "WSS"
    assert sdef.is_stream
    assert sdef.is_ipv6
    assert not parse_row(1, "udp:10.0.0.1").is_stream


def test_static_entries_are_strings_or_tables() -> None:
    assert parse_static("udp:127.0.0.1:5060", index=0).port == 5060
    table = parse_static({"socket": "tcp:127.0.0.1", "tag": "core"}, index=1)
    assert (table.proto, table.tag, table.row_id) == ("tcp", "core", None)
    with pytest.raises(SocketDefError, match="unknown keys"):
        parse_static({"socket": "udp:127.0.0.1", "port": 1}, index=2)
    with pytest.raises(SocketDefError, match="expected a socket string"):
        parse_static(5060, index=3)


# --- Hypothesis: render then parse gives the same definition -------------------------

_labels = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
_hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))),
    st.lists(_labels, min_size=1, max_size=3).map(".".join),
)
_ports = st.integers(1, 65535)


@st.composite
def socket_defs(draw: st.DrawFn) -> SocketDef:
    proto = draw(st.sampled_from(PROTOS))
    host = draw(_hosts)
    port = draw(st.one_of(st.none(), _ports))
    adv_host = draw(st.one_of(st.none(), _hosts))
    adv_port = draw(_ports) if adv_host is not None else None
    return SocketDef(
        proto=proto,
        host=host,
        port=DEFAULT_PORTS[proto] if port is None else port,
        advertised_host=None
        if adv_host is None
        else ("[" + adv_host + "]" if ":" in adv_host else adv_host),
        advertised_port=adv_port,
        tag=draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True))),
        flags=frozenset(draw(st.sets(st.sampled_from(FLAG_NAMES)))),
        tos=draw(st.one_of(st.none(), st.integers(1, 255))),
    )


@given(socket_defs())
def test_render_then_parse_round_trips(sdef: SocketDef) -> None:
    row = sdef.to_row()
    assert parse_row(1, **row) == sdef


@given(
    st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=50), st.integers()),
    st.one_of(st.none(), st.text(max_size=140)),
    st.one_of(st.none(), st.text(max_size=140)),
    st.one_of(st.none(), st.text(max_size=140)),
    st.one_of(st.none(), st.text(max_size=40)),
)
def test_arbitrary_rows_parse_or_give_a_rejection(
    socket: object, advertised: object, tag: object, flags: object, tos: object
) -> None:
    try:
        parse_row(9, socket, advertised, tag, flags, tos)
    except SocketDefError as error:
        assert str(error).startswith("row 9: ")


@pytest.mark.parametrize(
    "tos",
    [
        "1_6",
        "+16",
        "\u0661\u0666",
        "\uff11\uff16",
        "0x1_0",
        "-0",
        "0x",
        "0x100",
        "0016",
        "16.0",
        "0b10000",
        "1e1",
    ],
)
def test_tos_takes_ascii_digits_only(tos: str) -> None:
    error = rejection({"socket": "udp:10.0.0.1", "tos": tos})
    assert (error.row_id, error.column, error.value) == (7, "tos", tos)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("advertised", "[fe80::1%eth0]"),
        ("advertised", "[fe80::1%eth0]:5060"),
        ("advertised", "[fe80::1%251]"),
        ("socket", "udp:[fe80::1%eth0]:5060"),
        ("socket", "tcp:[fe80::1%lo]"),
    ],
)
def test_ipv6_zone_ids_are_rejected(column: str, value: str) -> None:
    row = {"socket": "udp:10.0.0.1", column: value}
    error = rejection(row)
    assert error.column == column
    assert "zone id" in error.reason


@pytest.mark.parametrize(
    ("value", "row_id"), [(7, 7), ("12", 12), (b"3", 3), ("-4", -4), (2**40, 2**40)]
)
def test_row_ids_are_integers_or_their_ascii_digits(value: object, row_id: int) -> None:
    assert parse_row_id(value) == row_id


@pytest.mark.parametrize(
    "value", [None, "", "abc", "1.5", 1.0, "+1", "1_0", "\u0661", " 1", True, "9" * 19, b"\xff"]
)
def test_other_row_ids_are_rejected_naming_the_value(value: object) -> None:
    with pytest.raises(SocketDefError) as info:
        parse_row_id(value)
    assert info.value.column == "id"
    assert "not an integer row id" in str(info.value)
