"""``[proxy]``: the stateless proxy's settings and its ``[[proxy.route]]`` tables.

A route is checked here into a frozen `ProxyRoute` (what it matches, where
it sends); `find_route` picks the first that matches a request. The
forwarding rules that use them live in `sipsock.apps.proxyrules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sipsock.config.reader import ConfigError, Reader
from sipsock.sip.grammar import is_token
from sipsock.sip.uri import (
    Destination,
    UriError,
    canonical_host,
    destination_of,
    host_matches,
    parse_uri,
    show_value,
)

#: Methods that follow the route of the INVITE they belong to.
FOLLOW_INVITE: Final = frozenset({"ACK", "CANCEL"})
#: The value of ``destination`` that means "where the Request-URI points".
REQUEST_URI: Final = "request-uri"
#: Keys of one ``[[proxy.route]]`` table.
ROUTE_KEYS: Final = frozenset({"in_tag", "uri_host", "methods", "destination", "out_tag"})
TAG_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


class RouteError(ValueError):
    """A route table that cannot be used: ``key`` names the entry, ``reason`` says why.

    ``str(error)`` is ``"key: reason"`` (``reason`` alone when no key applies).
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}" if key else reason)


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


@dataclass(frozen=True)
class ProxySettings:
    """``[proxy]``: the built-in stateless proxy (``sipsock.apps:StatelessProxy``).

    ``routes`` come from ``[[proxy.route]]`` tables, numbered from 1 in
    messages; ``secret`` salts the proxy's branches (None: derived per
    installation); ``configured`` says whether the file has a ``[proxy]``.
    """

    routes: tuple[ProxyRoute, ...] = ()
    record_route: bool = True
    secret: str | None = None
    configured: bool = False


def read_proxy(reader: Reader, data: Mapping[str, Any]) -> ProxySettings:
    sec = reader.section(data, "proxy", ProxySettings, keys={"route", "record_route", "secret"})
    try:
        routes = parse_routes(sec.get("route", list, []))
    except RouteError as error:
        raise ConfigError(reader.source, f"[[proxy.route]] {error.key}", error.reason) from None
    secret = sec.get("secret", str)
    if secret is not None and not secret:
        sec.fail("secret", "must not be empty (leave it out to have one derived)")
    return ProxySettings(
        routes=routes,
        record_route=sec.get("record_route", bool),
        secret=secret,
        configured="proxy" in data,
    )


def parse_route(table: object, number: int) -> ProxyRoute:
    """Check one ``[[proxy.route]]`` table; raises `RouteError` naming the key."""
    if isinstance(table, ProxyRoute):
        return table
    if not isinstance(table, Mapping):
        raise RouteError("", f"must be a table, not {show_value(table)}")
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
        except UriError as error:
            raise RouteError(
                "destination", f"{error.reason} (write a SIP URI or {REQUEST_URI!r})"
            ) from None
    methods: frozenset[str] = frozenset()
    if "methods" in table:
        raw = table["methods"]
        if not isinstance(raw, list) or not raw:
            raise RouteError(
                "methods", f"must be a non-empty list of method names, not {show_value(raw)}"
            )
        for item in raw:
            if not isinstance(item, str) or not is_token(item):
                raise RouteError("methods", f"{show_value(item)} is not a SIP method name")
        methods = frozenset(item.upper() for item in raw)
    uri_host = None
    if "uri_host" in table:
        uri_host = _string(table, "uri_host")
        try:
            uri_host = canonical_host(uri_host, wildcard=True)
        except UriError as error:
            raise RouteError("uri_host", error.reason) from None
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


def _string(table: Mapping[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value:
        raise RouteError(key, f"must be a non-empty string, not {show_value(value)}")
    return value


def _tag(table: Mapping[str, Any], key: str) -> str | None:
    if key not in table:
        return None
    value = _string(table, key)
    if not TAG_RE.fullmatch(value):
        raise RouteError(key, f"{show_value(value)} is not a tag (letters, digits, '_' and '-')")
    return value
