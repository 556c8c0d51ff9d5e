"""RFC 3261 well-formedness checks run on demand (``Message.validate``).

Parsing stays lazy and fast; these rules run only when a caller asks whether
a message may be processed.  Each failure is a :class:`SipParseError` whose
``status`` is the answer RFC 4475 recommends for a request.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import TYPE_CHECKING, Final

from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import TOKEN_CHARS, is_token, parse_number, split_values
from sipsock.sip.memo import MAX_NAME, Memo
from sipsock.sip.via import check_via

if TYPE_CHECKING:
    from sipsock.sip.message import Message

MAX_CSEQ: Final = 2**32 - 1

#: Methods of RFC 3261 and its common extensions; another method in a request
#: whose CSeq does not match is answered 501, not 400 (RFC 4475 3.1.2.18).
KNOWN_METHODS: Final = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)

#: Request-URI schemes sipsock can route; any other is answered 416.
SUPPORTED_URI_SCHEMES: Final = frozenset({"sip", "sips", "tel"})

_SINGLE_HEADERS: Final = (
    "call-id",
    "content-length",
    "content-type",
    "cseq",
    "from",
    "max-forwards",
    "to",
)
_REQUIRED_HEADERS: Final = ("via", "from", "to", "call-id", "cseq")
_REQUIRED_SET: Final = frozenset(_REQUIRED_HEADERS)
_ADDRESS_LIST_HEADERS: Final = frozenset({"contact", "route", "record-route"})

_match_scheme: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):").match
_match_version: Final = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I).fullmatch
_has_space: Final = re.compile(r"\s").search
_match_params: Final = re.compile(
    rf"(?:\s*;\s*[{TOKEN_CHARS}]+(?:\s*=\s*(?:\"(?:[^\"\\]|\\.)*\"|[{TOKEN_CHARS}:\[\]]+))?)*\s*",
    re.S,
).fullmatch

_T = f"[{TOKEN_CHARS}]+"
#: The usual name-addr, ``name <scheme:no-blanks>;param=value`` or
#: ``"name" <...>``: a strict subset of what `check_address` accepts (a
#: display name of tokens, quoted without escapes or none, a bracketed URI
#: with a scheme and no whitespace or brackets, plain parameters), accepted
#: by this one pattern before the rules are read one by one.
_match_plain_address: Final = re.compile(
    rf"(?:(?:{_T} )*|\"[^\"\\]*\" ?)<[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>]*>"
    rf"(?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*"
).fullmatch


#: Values proven well-formed, so that a value a peer repeats (its Request-URI,
#: Contact, To, Route, CSeq) is read once, not once per message. Only what
#: passed is kept; bounded in entries and bytes (`Memo`).
_GOOD_URIS: Final[Memo[str, bool]] = Memo(max_entries=16 * 1024)
_GOOD_ADDRESSES: Final[Memo[str, bool]] = Memo(max_entries=16 * 1024)
_CSEQS: Final[Memo[str, tuple[int, str]]] = Memo(max_entries=16 * 1024)


def parse_cseq(value: str | None) -> tuple[int, str]:
    """Parse a CSeq value into ``(number, method)``; the number must fit 32 bits."""
    known = _CSEQS.get(value) if value is not None else None
    if known is not None:
        return known
    cseq = _parse_cseq(value)
    assert value is not None
    return _CSEQS.remember(value, cseq, len(value))


def _parse_cseq(value: str | None) -> tuple[int, str]:
    if value is None:
        raise SipParseError("no CSeq header", status=400)
    parts = value.split()
    number = parse_number(parts[0]) if len(parts) == 2 else None
    if number is None or not (parts[1] in KNOWN_METHODS or is_token(parts[1])):
        raise SipParseError(f"malformed CSeq {value!r}", status=400)
    if number > MAX_CSEQ:
        raise SipParseError(f"CSeq number {parts[0][:20]} above 2**32-1", status=400)
    return number, parts[1]


def check_request(message: Message, method: str, uri: str, version: str) -> None:
    """Check a request's start line and headers."""
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _match_version(version):
            raise SipParseError(f"unsupported SIP version {version!r}", status=505)
        raise SipParseError(f"malformed SIP version {version!r}", status=400)
    if uri not in _GOOD_URIS:  # (`check_request_uri`, without the call for a known URI)
        check_request_uri(uri)
    _, cseq_method = _check_headers(message)
    if cseq_method != method:
        status = 400 if method in KNOWN_METHODS else 501
        raise SipParseError(
            f"CSeq method {cseq_method!r} does not match method {method!r}", status=status
        )


def check_request_uri(uri: str) -> None:
    """Reject whitespace, ``<>``, an invalid scheme, URI headers; 416 for other schemes."""
    if uri not in _GOOD_URIS:
        _check_request_uri(uri)
        _GOOD_URIS.remember(uri, True, len(uri))


def _check_request_uri(uri: str) -> None:
    if _has_space(uri) or uri.startswith("<"):
        raise SipParseError(f"malformed Request-URI {uri!r}", status=400)
    scheme = _match_scheme(uri)
    if scheme is None:
        raise SipParseError(f"Request-URI without a scheme {uri!r}", status=400)
    name = scheme.group(1).lower()
    if name in ("sip", "sips") and "?" in uri.rpartition("@")[2]:
        raise SipParseError(f"header fields in Request-URI {uri!r}", status=400)
    if name not in SUPPORTED_URI_SCHEMES:
        raise SipParseError(f"unsupported URI scheme {name!r}", status=416)


def check_headers(message: Message) -> None:
    """Check header names, required and single headers, Via, CSeq and addresses."""
    _check_headers(message)


def _check_headers(message: Message) -> tuple[int, str]:
    """`check_headers`, giving the parsed CSeq.

    The rules that read only the header names (tokens, single headers,
    required headers) are decided once per sequence of names (`_PLANS`: a
    peer repeats its layout), which also says where the values the other
    rules read are; those rules then run in their documented order, so a
    message with several faults is refused for the same one.
    """
    headers = message.headers
    names = tuple(map(_name_of, headers))
    plan = _PLANS.get(names)
    if plan is None:
        plan = _plan(names, message._header_keys())
        _PLANS.remember(names, plan, sum(map(len, names)) + 8 * len(names))
    first, via_at, address_at = plan
    for index in via_at:
        value = headers[index][1]
        if "," in value:
            for item in split_values(value):
                check_via(item)
        else:
            check_via(value.strip())
    cseq_value = headers[first["cseq"]][1]
    cseq = _CSEQS.get(cseq_value) or parse_cseq(cseq_value)
    call_id = headers[first["call-id"]][1]
    if not call_id:
        raise SipParseError("no Call-ID header", status=400)
    if not call_id.strip():
        raise SipParseError("empty Call-ID", status=400)
    if "max-forwards" in first:
        max_forwards = headers[first["max-forwards"]][1]
        # `parse_number` gives None exactly when this fails (one call less).
        if not (max_forwards.isascii() and max_forwards.isdigit()):
            raise SipParseError(f"malformed Max-Forwards {max_forwards!r}", status=400)
    # `check_address`, without the call for a value it knows to be good, or
    # for a good value followed by ``;tag=`` and a token (a From, the To of a
    # dialog; its untagged part is what `check_address` remembers).
    good = _GOOD_ADDRESSES
    value = headers[first["from"]][1]
    if value not in good:
        cut = value.rfind(";tag=")
        if cut <= 0 or value[:cut] not in good or is_token(value[cut + 5 :]) is None:
            check_address(value)
    value = headers[first["to"]][1]
    if value not in good:
        cut = value.rfind(";tag=")
        if cut <= 0 or value[:cut] not in good or is_token(value[cut + 5 :]) is None:
            check_address(value)
    for index in address_at:
        value = headers[index][1]
        for item in split_values(value) if "," in value else (value.strip(),):
            if item != "*" and item not in good:
                check_address(item)
    return cseq


_name_of: Final = itemgetter(0)
#: Where the first field of each name is, then every Via and every address-list field.
_Plan = tuple[dict[str, int], tuple[int, ...], tuple[int, ...]]
#: Plans of header-name sequences that passed the name rules (bounded in entries and bytes).
_PLANS: Final[Memo[tuple[str, ...], _Plan]] = Memo(max_entries=4 * 1024, max_bytes=1024 * 1024)


def _plan(names: tuple[str, ...], keys: list[str]) -> _Plan:
    """Run the rules on header names (``keys``: their canonical forms), in order; the plan.

    Every name is a token, no single header is repeated, every required
    header is there; the plan says where the values the other rules read are.
    """
    token_names = _TOKEN_NAMES
    first: dict[str, int] = {}
    repeated: set[str] = set()
    vias: list[int] = []
    addresses: list[int] = []
    for index, (field, key) in enumerate(zip(names, keys, strict=True)):
        if field not in token_names:
            if not is_token(field):
                raise SipParseError(f"malformed header name {field!r}", status=400)
            token_names.remember(field, True, len(field))
        if key in first:
            repeated.add(key)
        else:
            first[key] = index
        if key == "via":
            vias.append(index)
        elif key in _ADDRESS_LIST_HEADERS:
            addresses.append(index)
    if repeated:
        for key in _SINGLE_HEADERS:
            if key in repeated:
                raise SipParseError(f"more than one {key} header", status=400)
    if not first.keys() >= _REQUIRED_SET:
        for key in _REQUIRED_HEADERS:
            if key not in first:
                raise SipParseError(f"no {key} header", status=400)
    return first, tuple(vias), tuple(addresses)


#: Header-name spellings already checked to be tokens (bounded in entries and bytes).
_TOKEN_NAMES: Final[Memo[str, bool]] = Memo(max_bytes=512 * 1024, max_item=MAX_NAME)


def check_address(value: str) -> None:
    """Check a name-addr or addr-spec with header parameters (From, To, Contact, Route).

    A value with a tag (a From, the To of a dialog: new with every call) is
    not remembered; others are, once they pass. Of a value of the usual
    shape (`_match_plain_address`) that ends in ``;tag=`` and a token, the
    text before the tag is remembered instead: that ``;tag=`` starts its
    last parameter (a token holds no ``;``, ``>`` or quote), so the text
    before it has the usual shape too. A good address followed by
    ``;tag=`` and a token is good, so the next call's From or To with a
    new tag is known good from its untagged part (see `_check_headers`).
    """
    if value in _GOOD_ADDRESSES:
        return
    if _match_plain_address(value) is None:
        check_address_rules(value)
    elif "tag" in value:
        cut = value.rfind(";tag=")
        if cut > 0 and is_token(value[cut + 5 :]) is not None:
            untagged = value[:cut]
            if "tag" not in untagged:
                _GOOD_ADDRESSES.remember(untagged, True, len(untagged))
        return
    if "tag" not in value:
        _GOOD_ADDRESSES.remember(value, True, len(value))


def check_address_rules(value: str) -> None:
    """`check_address` rule by rule (without the one-pattern shortcut for the usual shape)."""
    text = value.strip()
    if not text:
        raise SipParseError("empty address", status=400)
    if text.startswith('"'):
        end = _quoted_end(text)
        rest = text[end:].lstrip()
        if not rest.startswith("<"):
            raise SipParseError(f"quoted display name without <URI> in {value!r}", status=400)
        angle = end + text[end:].index("<")
    else:
        angle = text.find("<")
    if angle >= 0:
        display = text[:angle].strip()
        if not text.startswith('"') and display and not all(map(is_token, display.split())):
            raise SipParseError(f"display name must be quoted in {value!r}", status=400)
        close = text.find(">", angle)
        if close < 0:
            raise SipParseError(f"unclosed <URI> in {value!r}", status=400)
        uri, params = text[angle + 1 : close], text[close + 1 :]
        if _has_space(uri):
            raise SipParseError(f"whitespace inside <URI> in {value!r}", status=400)
    else:
        uri, semicolon, params = text.partition(";")
        uri, params = uri.rstrip(), semicolon + params
        if _has_space(uri) or "?" in uri.rpartition("@")[2] or "," in uri:
            raise SipParseError(f"URI with ? , or spaces must be in <> in {value!r}", status=400)
    if _match_scheme(uri) is None:
        raise SipParseError(f"URI without a scheme in {value!r}", status=400)
    if not _match_params(params):
        raise SipParseError(f"malformed parameters in {value!r}", status=400)


def _quoted_end(text: str) -> int:
    """Index just past the quoted string that starts ``text``."""
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    raise SipParseError(f"unterminated quoted string in {text!r}", status=400)
