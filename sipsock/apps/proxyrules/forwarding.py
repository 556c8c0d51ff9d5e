"""The proxy's forwarding rules (RFC 3261 16.6): Max-Forwards, the branch, loops, the copy.

Pure: `sipsock.apps.proxy` asks these functions what to do and does it.
The branch of the proxy's Via (`proxy_branch`) is the same for every
retransmission, for the CANCEL and for the ACK of a non-2xx answer, and
carries a loop key (`loop_key`) so a request that comes back unchanged is
recognised (`is_loop`); `forward_copy` builds the copy sent on in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sipsock.sip import MAGIC_COOKIE, Request, stateless_branch
from sipsock.sip.grammar import canonical_name, split_values

#: Max-Forwards put into a request that has none (RFC 3261 16.6 step 3).
DEFAULT_MAX_FORWARDS: Final = 70
#: Methods that create a dialog: the ones that get a Record-Route.
DIALOG_METHODS: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})

#: The proxy's branch: magic cookie, 24 hex digits of transaction id, '.', 10 of loop key.
_match_own_branch = re.compile(rf"{MAGIC_COOKIE}[0-9a-f]{{24}}\.([0-9a-f]{{10}})").fullmatch
_find_branch = re.compile(r"(?i);\s*branch\s*=\s*([^;,\s]+)").findall
_find_tag = re.compile(r"(?i);\s*tag\s*=\s*([^;\s]+)").search
_LOOP_HEADERS: Final = frozenset({"proxy-require", "proxy-authorization"})


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


def wants_record_route(request: Request) -> bool:
    """Whether a request may create a dialog: a dialog method and no To tag."""
    if request.method not in DIALOG_METHODS:
        return False
    return _find_tag(request.get("to") or "") is None
