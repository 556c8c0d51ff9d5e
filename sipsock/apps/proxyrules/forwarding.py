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
from typing import Any, Final

from sipsock.apps.proxyrules.viatemplate import TemplateRule
from sipsock.sip import MAGIC_COOKIE, Request, Response, SipParseError, Via, parse_via
from sipsock.sip.checks import parse_cseq
from sipsock.sip.grammar import TOKEN_CHARS, canonical_name, parse_number, split_values
from sipsock.sip.memo import Memo

#: Max-Forwards put into a request that has none (RFC 3261 16.6 step 3).
DEFAULT_MAX_FORWARDS: Final = 70
#: Methods that create a dialog: the ones that get a Record-Route.
DIALOG_METHODS: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})

#: The proxy's branch: magic cookie, 24 hex digits of transaction id, '.', 10 of loop key.
_match_own_branch: Final = re.compile(rf"{MAGIC_COOKIE}[0-9a-f]{{24}}\.([0-9a-f]{{10}})").fullmatch
_find_branch: Final = re.compile(r"(?i);\s*branch\s*=\s*([^;,\s]+)").findall
_find_tag: Final = re.compile(r"(?i);\s*tag\s*=\s*([^;\s]+)").search
#: The tag rule of `sipsock.sip.stateless_branch` (which reads it with ``re.I``).
_find_stateless_tag: Final = re.compile(r";\s*tag\s*=\s*([^;\s]+)", re.I).search
#: The separator of the Route values and of the loop fields in `loop_key`'s text.
_UNIT: Final = "\x1f"
_LOOP_HEADERS: Final = frozenset({"proxy-require", "proxy-authorization"})
_T = f"[{TOKEN_CHARS}]+"
#: The usual Via shape (``SIP/2.0/UDP host:port;name=value;name``, no blank, no
#: quote, no IPv6), the one `parse_via` reads with its plain pattern: the host,
#: the port digits and the parameters. No ``;`` can be inside a value here.
_match_plain_via: Final = re.compile(
    rf"{_T}/{_T}/{_T} ([A-Za-z0-9.\-]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*)"
).fullmatch


def next_max_forwards(value: int | None) -> int | None:
    """Max-Forwards of the forwarded copy: one less, 70 when absent; None means 483."""
    if value is None:
        return DEFAULT_MAX_FORWARDS
    if value <= 0:
        return None
    return value - 1


@dataclass(slots=True, init=False)
class HeaderScan:
    """The header fields the proxy reads, collected in one pass over a request.

    ``vias`` are the Via field values as they are (one may hold several
    comma-separated values), ``routes`` every Route value (split), and
    ``loop_fields`` the Proxy-Require and Proxy-Authorization fields;
    ``keys`` the canonical name of every field, in order. ``first`` holds
    the first value of each field `forward_copy` and the branch need (From,
    To, Call-ID, CSeq, Max-Forwards), ``proxy_require`` every Proxy-Require
    option tag (split).
    """

    vias: list[str]
    routes: list[str]
    loop_fields: list[str]
    keys: list[str]
    first: dict[str, str]
    proxy_require: list[str]

    def __init__(
        self,
        vias: list[str],
        routes: list[str],
        loop_fields: list[str],
        keys: list[str] | None = None,
        first: dict[str, str] | None = None,
        proxy_require: list[str] | None = None,
    ) -> None:
        # Written out (``init=False``): mypyc compiles this one, while the
        # ``__init__`` dataclasses generates stays interpreted Python, a frame
        # per request. Every record built per message is written so.
        self.vias = vias
        self.routes = routes
        self.loop_fields = loop_fields
        self.keys = keys if keys is not None else []
        self.first = first if first is not None else {}
        self.proxy_require = proxy_require if proxy_require is not None else []

    @property
    def top_via(self) -> str | None:
        """The first Via value (text), None without a Via."""
        if not self.vias:
            return None
        value = self.vias[0]
        return split_values(value)[0] if "," in value else value


#: Fields whose first value `scan_headers` keeps in ``HeaderScan.first``.
_FIRST_OF: Final = frozenset({"from", "to", "call-id", "cseq", "max-forwards"})


def scan_headers(request: Request) -> HeaderScan:
    """Collect the `HeaderScan` of ``request``."""
    vias: list[str] = []
    routes: list[str] = []
    loop_fields: list[str] = []
    first: dict[str, str] = {}
    proxy_require: list[str] = []
    keys = request._header_keys().copy()  # the names the parser already read
    for (_, value), key in zip(request.headers, keys, strict=True):
        if key == "via":
            vias.append(value)
        elif key in _FIRST_OF:
            if key not in first:
                first[key] = value
        elif key == "route":
            routes += route_values(value)
        elif key in _LOOP_HEADERS:
            loop_fields.append(f"{key}:{value}")
            if key == "proxy-require":
                proxy_require += split_values(value)
    return HeaderScan(vias, routes, loop_fields, keys, first, proxy_require)


#: Route field values to their entries: the in-dialog requests of every call
#: through this proxy carry the same few Route fields (bounded like every memo).
_ROUTE_VALUES: Final[Memo[str, tuple[str, ...]]] = Memo(max_bytes=512 * 1024, max_item=1024)


def route_values(value: str) -> tuple[str, ...]:
    """The entries of one Route field value (`split_values`, remembered)."""
    known = _ROUTE_VALUES.get(value)
    if known is None:
        known = _ROUTE_VALUES.remember(value, tuple(split_values(value)), 2 * len(value))
    return known


def max_forwards_of(scan: HeaderScan) -> int | None:
    """The request's Max-Forwards (None when absent); malformed raises `SipParseError`."""
    value = scan.first.get("max-forwards")
    if value is None:
        return None
    number = parse_number(value)
    if number is None:
        raise SipParseError(f"malformed Max-Forwards {value!r}", status=400)
    return number


def loop_key(request: Request, secret: str, scan: HeaderScan | None = None) -> str:
    """The part of the proxy's branch that stays equal while a request loops.

    A salted hash of what decides where the request goes and what identifies
    it (RFC 3261 16.6 step 8, without the top Via, which changes every hop,
    and without the To tag, which the ACK of a non-2xx answer adds): the
    Request-URI, the From tag, Call-ID, the CSeq number, every Route value as
    received, Proxy-Require and Proxy-Authorization.
    """
    scan = scan or scan_headers(request)
    first = scan.first
    from_tag = _find_tag(first.get("from") or "")
    parts = [
        request.uri,
        from_tag.group(1) if from_tag else "",
        first.get("call-id") or "",
        str(parse_cseq(first.get("cseq"))[0]),
        _UNIT.join(scan.routes),
        _UNIT.join(scan.loop_fields),
    ]
    return _hashed(_keyed(secret), "\x00".join(parts))


#: Secrets to a BLAKE2b of 5 bytes keyed with the secret (a proxy has one; bounded all
#: the same), copied per hash: keying a new one costs a block of hashing.
_KEYED: Final[Memo[str, Any]] = Memo(max_entries=16, max_item=256)


def _keyed(secret: str) -> Any:
    hasher = _KEYED.get(secret)
    if hasher is None:
        key = secret.encode("utf-8", "surrogateescape")[:64]
        hasher = hashlib.blake2b(digest_size=5, key=key)
        _KEYED.remember(secret, hasher, len(secret) + len(key) + 64)
    return hasher


def transaction_id(request: Request, secret: str, scan: HeaderScan | None = None) -> str:
    """`sipsock.sip.stateless_branch` of ``request``, from its `HeaderScan`.

    The same text (so every process, old or new, gives a request the same
    branch), without looking the fields up again: the top Via's branch and
    sent-by when the branch has the magic cookie, else the RFC 2543
    transaction key.
    """
    scan = scan or scan_headers(request)
    top = scan.top_via
    if top is None:
        raise SipParseError("no Via header", status=400)
    plain = _cookie_branch(top)
    if plain is not None:
        branch, sent_by = plain
        return MAGIC_COOKIE + _hashed(_unkeyed(secret), f"{branch}\x00{sent_by}")
    via = parse_via(top)
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        parts = [branch, via.sent_by]
    else:
        first = scan.first
        call_id = first.get("call-id")
        if not call_id:
            raise SipParseError("no Call-ID header", status=400)
        to_tag = _find_stateless_tag(first.get("to") or "")
        from_tag = _find_stateless_tag(first.get("from") or "")
        parts = [
            request.uri,
            to_tag.group(1) if to_tag else "",
            from_tag.group(1) if from_tag else "",
            call_id,
            str(parse_cseq(first.get("cseq"))[0]),
            str(via),
        ]
    return MAGIC_COOKIE + _hashed(_unkeyed(secret), "\x00".join(parts))


def _cookie_branch_of(via: str) -> tuple[str, str] | None:
    """The magic-cookie branch and the sent-by of a plain Via value, as `parse_via` gives them.

    None when the value is not plain (`parse_via` reads it), its port is out
    of range (`parse_via` refuses it) or its branch has no magic cookie.
    """
    match = _match_plain_via(via)
    if match is None:
        return None
    host, port_text, params = match.groups()
    if port_text is None:
        sent_by = host
    else:
        port = int(port_text)
        if not 0 < port <= 65535:
            return None
        sent_by = f"{host}:{port}"
    for param in params[1:].split(";"):
        key, _, value = param.partition("=")
        if key.lower() == "branch":
            if value.startswith(MAGIC_COOKIE) and len(value) > len(MAGIC_COOKIE):
                return value, sent_by
            return None
    return None


def _with_cookie_branch(found: tuple[str, str] | None, branch: str) -> tuple[str, str] | None:
    """``found`` with another first branch, as `_cookie_branch_of` would give it."""
    if found is None or not branch.startswith(MAGIC_COOKIE) or len(branch) == len(MAGIC_COOKIE):
        return None
    return branch, found[1]


#: `_cookie_branch_of`, remembered per Via template (every peer's Via but its branch).
_cookie_branch: Final[TemplateRule[tuple[str, str] | None]] = TemplateRule(
    _cookie_branch_of, lambda found: found[0] if found else None, _with_cookie_branch
)


#: Secrets to a BLAKE2b of 12 bytes fed with ``secret + "\x00"`` (copied per hash).
_UNKEYED: Final[Memo[str, Any]] = Memo(max_entries=16, max_item=256)


def _unkeyed(secret: str) -> Any:
    hasher = _UNKEYED.get(secret)
    if hasher is None:
        hasher = hashlib.blake2b(
            (secret + "\x00").encode("utf-8", "surrogateescape"), digest_size=12
        )
        _UNKEYED.remember(secret, hasher, 2 * len(secret) + 64)
    return hasher


def _hashed(start: Any, text: str) -> str:
    """The hex digest of ``start`` (a hasher, left as it is) fed with ``text`` too."""
    hasher = start.copy()
    hasher.update(text.encode("utf-8", "surrogateescape"))
    return str(hasher.hexdigest())


def proxy_branch(request: Request, secret: str, scan: HeaderScan | None = None) -> str:
    """The branch of the proxy's Via: same for retransmissions, CANCEL and non-2xx ACK.

    ``z9hG4bK`` + the stateless transaction id of `stateless_branch` + ``.``
    + `loop_key`, so a request that comes back unchanged is recognised.
    The usual request (a plain top Via with a magic-cookie branch, a From
    tag `_from_tag` reads) is hashed here in one go, with the same text
    `transaction_id` and `loop_key` hash; any other goes through them.
    """
    scan = scan or scan_headers(request)
    vias = scan.vias
    top = vias[0] if vias else None
    if top is not None and "," in top:
        top = split_values(top)[0]
    plain = _cookie_branch(top) if top is not None else None
    first = scan.first
    from_tag = _from_tag(first.get("from") or "")
    if plain is None or from_tag is None:
        return f"{transaction_id(request, secret, scan)}.{loop_key(request, secret, scan)}"
    branch, sent_by = plain
    transaction = _unkeyed(secret).copy()
    transaction.update(f"{branch}\x00{sent_by}".encode("utf-8", "surrogateescape"))
    parts = (
        f"{request.uri}\x00{from_tag}\x00{first.get('call-id') or ''}\x00"
        f"{parse_cseq(first.get('cseq'))[0]}\x00"
        f"{_UNIT.join(scan.routes)}\x00{_UNIT.join(scan.loop_fields)}"
    )
    loop = _keyed(secret).copy()
    loop.update(parts.encode("utf-8", "surrogateescape"))
    return f"{MAGIC_COOKIE}{transaction.hexdigest()}.{loop.hexdigest()}"


def _from_tag(value: str) -> str | None:
    """The tag `loop_key` reads in a From value (``""``: none), or None to let it read it.

    Read without the pattern when the first ``;`` of the value starts
    ``;tag=`` and the rest is the tag (no ``;``, no blank).
    """
    at = value.find(";tag=")
    if at < 0:
        return "" if ";" not in value else None
    if value.find(";") != at:
        return None
    tag = value[at + 5 :]
    if not tag or ";" in tag or not tag.isprintable() or " " in tag:
        return None
    return tag


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
    keys: Sequence[str] | None = None,
) -> Request:
    """The copy of ``request`` the proxy sends, built in one pass over the headers.

    ``via`` goes on top of the Via values and ``record_route`` (topmost
    first) on top of the Record-Route values; Max-Forwards becomes
    ``max_forwards`` (added when absent); the first ``drop_routes`` Route
    values are left out. Everything else is kept in order, body included.
    ``keys`` are the canonical names of the request's fields when known
    (`HeaderScan.keys`).
    """
    headers: list[tuple[str, str]] = []
    names: list[str] = []
    via_done = not via
    record_done = not record_route
    max_forwards_done = False
    after_via = -1
    dropping = drop_routes
    fields = request.headers
    if keys is None or len(keys) != len(fields):
        keys = [canonical_name(name) for name, _ in fields]
    for (name, value), key in zip(fields, keys, strict=True):
        if key == "via" and not via_done:
            headers.append(("Via", via))
            names.append("via")
            via_done = True
            after_via = len(headers)
        elif key == "record-route" and not record_done:
            headers += [("Record-Route", entry) for entry in record_route]
            names += ["record-route"] * len(record_route)
            record_done = True
        elif key == "max-forwards":
            if not max_forwards_done:
                headers.append((name, str(max_forwards)))
                names.append(key)
                max_forwards_done = True
            continue
        elif key == "route" and dropping:
            values = route_values(value)
            kept = values[dropping:]
            dropping = max(0, dropping - len(values))
            if kept:
                headers.append((name, ", ".join(kept)))
                names.append(key)
            continue
        headers.append((name, value))
        names.append(key)
    if not via_done:
        headers.insert(0, ("Via", via))
        names.insert(0, "via")
        after_via = 1
    if not record_done:
        headers[after_via:after_via] = [("Record-Route", entry) for entry in record_route]
        names[after_via:after_via] = ["record-route"] * len(record_route)
    if not max_forwards_done:
        headers.append(("Max-Forwards", str(max_forwards)))
        names.append("max-forwards")
    copy = Request(request.method, request.uri, headers, request.body, request.version)
    # The names are known: the send's serialisation need not look them up again.
    copy._remember_keys(names)
    return copy


@dataclass(frozen=True, slots=True)
class SplitVia:
    """A response's top Via, parsed, and the response without it (RFC 3261 16.7 item 3).

    ``next_via`` is the Via value that is on top of ``copy`` (None: no Via left).
    """

    top: Via
    copy: Response
    next_via: str | None


def split_top_via(response: Response) -> SplitVia:
    """Take the top Via value off ``response``, in one pass over the headers.

    Gives what ``response.top_via``, a copy with ``remove_first("via")`` and
    that copy's ``top_via`` text would, without looking the fields up three
    times. Raises `SipParseError` when there is no Via or the top one is
    malformed.
    """
    headers: list[tuple[str, str]] = []
    keys: list[str] = []
    top: Via | None = None
    next_via: str | None = None
    for name, text in response.headers:
        key = canonical_name(name)
        value = text
        if key == "via":
            if top is None:
                values = split_values(text)
                top = parse_via(values[0] if "," in text else text)
                if len(values) == 1:
                    continue
                value = ", ".join(values[1:])
            if next_via is None:
                next_via = split_values(value)[0] if "," in value else value
        headers.append((name, value))
        keys.append(key)
    if top is None:
        raise SipParseError("no Via header", status=400)
    copy = Response(response.code, response.reason, headers, response.body, response.version)
    copy._remember_keys(keys)
    return SplitVia(top, copy, next_via)


def wants_record_route(request: Request, scan: HeaderScan | None = None) -> bool:
    """Whether a request may create a dialog: a dialog method and no To tag."""
    if request.method not in DIALOG_METHODS:
        return False
    to = scan.first.get("to") if scan is not None else request.get("to")
    return _find_tag(to or "") is None
