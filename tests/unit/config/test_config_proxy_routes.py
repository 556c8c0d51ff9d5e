"""[[proxy.route]] tables: checked into routes, and the first that matches wins."""

from __future__ import annotations

from typing import Any

import pytest

from sipsock.config.proxy import (
    ProxyRoute,
    RouteError,
    find_route,
    parse_route,
    parse_routes,
)
from sipsock.sip.uri import Destination


def test_a_route_table_is_checked_and_normalised() -> None:
    route = parse_route(
        {
            "in_tag": "a",
            "uri_host": "Example.COM.",
            "methods": ["invite", "MESSAGE"],
            "destination": "sip:127.0.0.1:5080;transport=tcp",
            "out_tag": "b",
        },
        3,
    )
    assert route == ProxyRoute(
        number=3,
        destination=Destination("127.0.0.1", 5080, "tcp"),
        in_tag="a",
        uri_host="example.com",
        methods=frozenset({"INVITE", "MESSAGE"}),
        out_tag="b",
    )
    assert parse_route({"destination": "Request-URI"}, 1).destination is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "destination: missing"),
        ({"destination": "http://x"}, "destination: 'http://x' is not a sip: or sips: URI"),
        ({"destination": 5}, "destination: must be a non-empty string"),
        ({"destination": "request-uri", "out_tag": "b c"}, "out_tag: 'b c' is not a tag"),
        ({"destination": "request-uri", "in_tag": ""}, "in_tag: must be a non-empty string"),
        ({"destination": "request-uri", "methods": "INVITE"}, "methods: must be a non-empty list"),
        ({"destination": "request-uri", "methods": ["IN VITE"]}, "methods: 'IN VITE' is not"),
        ({"destination": "request-uri", "uri_host": "a..b"}, "uri_host: 'a..b' is not a host"),
        ({"destination": "request-uri", "to": "x"}, "to: unknown key"),
        ({"destination": "sip:h;transport=sctp"}, "destination: transport 'sctp'"),
    ],
)
def test_route_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RouteError) as info:
        parse_route(table, 1)
    assert str(info.value).startswith(message)


def test_route_list_errors_name_the_route_number() -> None:
    with pytest.raises(RouteError) as info:
        parse_routes(
            [{"destination": "request-uri"}, {"destination": "request-uri", "out_tag": "-?"}]
        )
    assert info.value.key == "2: out_tag"
    with pytest.raises(RouteError) as info:
        parse_routes(["not a table"])
    assert str(info.value).startswith("1: must be a table")


def test_the_first_matching_route_wins() -> None:
    routes = parse_routes(
        [
            {"in_tag": "a", "methods": ["MESSAGE"], "destination": "sip:10.0.0.1"},
            {"in_tag": "a", "uri_host": "*.example.com", "destination": "sip:10.0.0.2"},
            {"uri_host": "example.com", "destination": "sip:10.0.0.3"},
            {"in_tag": "b", "destination": "request-uri"},
        ]
    )

    def number(tag: str | None, host: str | None, method: str) -> int | None:
        route = find_route(routes, tag, host, method)
        return None if route is None else route.number

    assert number("a", "x", "MESSAGE") == 1
    assert number("a", "sip.example.com", "INVITE") == 2
    assert number("a", "example.com", "INVITE") == 3
    assert number(None, "EXAMPLE.com.", "OPTIONS") == 3
    assert number("b", None, "BYE") == 4
    assert number("c", "other.org", "INVITE") is None


def test_cancel_and_ack_follow_an_invite_route() -> None:
    [route] = parse_routes([{"methods": ["INVITE"], "destination": "request-uri"}])
    assert route.matches(None, None, "CANCEL")
    assert route.matches(None, None, "ACK")
    assert not route.matches(None, None, "BYE")
