"""Via header values: parse, build, branch ids and RFC 3261 18.2.1 / RFC 3581."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING, Final, NamedTuple

from sipsock.addresses import bracket, join_host_port, same_ip, unbracket
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import TOKEN_CHARS, is_token, parse_number, split_values
from sipsock.sip.memo import Memo

if TYPE_CHECKING:
    from sipsock.sip.message import Request

#: RFC 3261 8.1.1.7 magic cookie that starts every RFC 3261 branch.
MAGIC_COOKIE: Final = "z9hG4bK"

_T = f"[{TOKEN_CHARS}]+"
_match_sent_by: Final = re.compile(
    rf"\s*({_T})\s*/\s*({_T})\s*/\s*({_T})\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)"
    r"(?:\s*:\s*([0-9]{1,5}))?\s*"
).match
_PARAM = rf";\s*({_T})(?:\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[{TOKEN_CHARS}:\[\]]+))?\s*"
#: Whitespace around a ``;`` belongs to exactly one place in the pattern (the end
#: of the parameter before it): with two places, a failing match backtracks
#: through every split of every gap, exponential in the number of parameters.
_match_params: Final = re.compile(rf"\s*(?:{_PARAM})*", re.S).fullmatch
_find_params: Final = re.compile(_PARAM, re.S).findall
#: The usual shape, without any optional whitespace or quoted parameter:
#: ``SIP/2.0/UDP host:port;name=value;name``.
_match_plain_via: Final = re.compile(
    rf"({_T}/{_T})/({_T}) ([A-Za-z0-9.\-]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*)"
).fullmatch


#: In the parameters of a plain Via (``;name=value`` with no blanks, no ``;``
#: in a value): the first ``rport`` (group 1 is ``=`` when it has a value),
#: and a ``received``.
_find_rport: Final = re.compile(r";rport(?:(=)|(?=;|$))", re.IGNORECASE).search
_find_received: Final = re.compile(r";received(?=[=;]|$)", re.IGNORECASE).search


class Via(NamedTuple):
    """One parsed Via value (RFC 3261 20.42).

    ``host`` is the sent-by host without IPv6 brackets; ``port`` is ``None``
    when the sent-by has none.  ``params`` keeps every parameter in order with
    its original spelling; a parameter without ``=`` has the value ``None``.
    ``str(via)`` gives the header value back.
    """

    protocol: str
    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, name: str) -> str | None:
        """Value of parameter ``name`` (case-insensitive); ``""`` when it has none."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return "" if value is None else value
        return None

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present, with or without a value."""
        name = name.lower()
        return any(key.lower() == name for key, _ in self.params)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (transaction id), or ``None``."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (source address seen by the next hop)."""
        return self.param("received")

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return self.param("maddr")

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` parameter as a number, or ``None`` when absent or invalid."""
        value = self.param("ttl")
        number = None if value is None else parse_number(value)
        if number is None or number > 255:
            return None
        return number

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581 ``rport``: ``None`` absent, ``True`` asked for (no value), or the port."""
        value = self.param("rport")
        if value is None:
            return None
        if value == "":
            return True
        number = parse_number(value)
        if number is not None and 0 < number <= 65535:
            return number
        return None

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it appears in the header (IPv6 in brackets)."""
        return bracket(self.host) if self.port is None else join_host_port(self.host, self.port)

    def with_param(self, name: str, value: str | None) -> Via:
        """Return a copy with parameter ``name`` set (replaced in place, else appended)."""
        lowered = name.lower()
        params = list(self.params)
        for index, (key, _) in enumerate(params):
            if key.lower() == lowered:
                params[index] = (key, value)
                break
        else:
            params.append((name, value))
        return Via(self.protocol, self.transport, self.host, self.port, tuple(params))

    def __str__(self) -> str:
        text = f"{self.protocol}/{self.transport} {self.sent_by}"
        for key, value in self.params:
            text += f";{key}" if value is None else f";{key}={value}"
        return text


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma list); raise :class:`SipParseError`."""
    match = _match_plain_via(value)
    if match is None:
        return _parse_any_via(value)
    protocol, transport, host, port_text, rest = match.groups()
    port = _port(port_text, value)
    params: list[tuple[str, str | None]] = []
    if rest:
        for param in rest[1:].split(";"):
            key, _, param_value = param.partition("=")
            params.append((key, param_value or None))
    return Via(protocol, transport.upper(), host, port, tuple(params))


#: Via values that passed `check_via`, with their branch cut out: ``(value
#: up to and with ``;branch=``, value from the ``;`` after the branch)``.
#: A peer's requests differ in their Via only by the branch; bounded.
_GOOD_VIAS: Final[Memo[tuple[str, str], bool]] = Memo(max_entries=16 * 1024)


def check_via(value: str) -> None:
    """Raise `SipParseError` where `parse_via` does, without building the `Via`.

    A value that passed, with its branch cut out (the text after the first
    ``;branch=`` up to the next ``;``), is remembered when that branch is a
    token: the same text around any other token passes too. A token is a
    whole parameter value to both Via patterns (a value runs up to the
    ``;``, a token holds no ``;``, quote, backslash, blank, ``=`` or ``,``),
    or lies inside a quoted string, which takes any token alike.
    """
    start = value.find(";branch=") + 8
    if start < 8:
        _check_via(value)
        return
    end = value.find(";", start)
    if end < 0:
        end = len(value)
    key = (value[:start], value[end:])
    token = is_token(value[start:end]) is not None
    if token and key in _GOOD_VIAS:
        return
    _check_via(value)
    if token:
        _GOOD_VIAS.remember(key, True, len(value))


def _check_via(value: str) -> None:
    """`check_via` without its memo."""
    match = _match_plain_via(value)
    if match is None:
        _parse_any_via(value)
        return
    port = match.group(4)
    if port is not None and not 0 < int(port) <= 65535:
        _port(port, value)  # raises


def _parse_any_via(value: str) -> Via:
    """:func:`parse_via` for every spelling the grammar allows (whitespace, quotes, IPv6)."""
    match = _match_sent_by(value)
    if match is None:
        raise SipParseError(f"malformed Via value {value!r}", status=400)
    name, version, transport, host, port_text = match.groups()
    port = _port(port_text, value)
    rest = value[match.end() :]
    if not _match_params(rest):
        raise SipParseError(f"malformed Via parameters in {value!r}", status=400)
    params = [(key, val or None) for key, val in _find_params(rest)]
    return Via(f"{name}/{version}", transport.upper(), unbracket(host), port, tuple(params))


def _port(text: str | None, value: str) -> int | None:
    """The sent-by port of Via ``value`` from its digits ``text`` (``None``: no port)."""
    if text is None:
        return None
    port = int(text)
    if not 0 < port <= 65535:
        raise SipParseError(f"Via port out of range in {value!r}", status=400)
    return port


def new_branch() -> str:
    """A fresh, globally unique RFC 3261 branch (magic cookie + 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def make_via(
    transport: str, host: str, port: int, branch: str | None = None, *, rport: bool = False
) -> str:
    """Build a Via header value for a socket of ``transport`` (UDP/TCP/TLS/WS/WSS).

    ``host`` and ``port`` are the socket's advertised address when it has one,
    else its own.  ``branch`` defaults to a fresh magic-cookie branch;
    ``rport=True`` asks the next hop for RFC 3581 symmetric response routing.
    """
    value = f"SIP/2.0/{transport.upper()} {bracket(host)}:{port};branch={branch or new_branch()}"
    return value + ";rport" if rport else value


def stateless_branch(request: Request, salt: str = "") -> str:
    """A branch that is the same for every retransmission of ``request`` (RFC 3261 16.11).

    Derived from the top Via branch when it carries the magic cookie (so a
    CANCEL or a non-2xx ACK gets the branch of its INVITE), else from the
    RFC 2543 transaction key (Request-URI, tags, Call-ID, CSeq number, top Via).
    ``salt`` (a per-proxy secret) keeps the result unguessable.
    """
    via = request.top_via
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        parts = [salt, branch, via.sent_by]
    else:
        parts = [
            salt,
            request.uri,
            _tag(request.get("to")),
            _tag(request.get("from")),
            request.call_id,
            str(request.cseq[0]),
            str(via),
        ]
    # Undecodable bytes of the message are surrogate escapes: hash them as they came.
    key = "\x00".join(parts).encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(key, digest_size=12).hexdigest()
    return MAGIC_COOKIE + digest


def _tag(value: str | None) -> str:
    if value is None:
        return ""
    match = re.search(r";\s*tag\s*=\s*([^;\s]+)", value, re.I)
    return match.group(1) if match else ""


def same_address(host: str, address: str) -> bool:
    """Whether a sent-by host and a source IP address are the same address."""
    if host.lower() == address.lower():
        return True
    return same_ip(host, address, zone="keep")


def stamp_via(via: Via, source_host: str, source_port: int) -> Via:
    """The top Via of a received request as stamped by RFC 3261 18.2.1 and RFC 3581 4.

    Adds ``received=<source_host>`` when the sent-by host differs from the
    source address, and always when the client sent an empty ``rport``, which
    is then filled with ``source_port``. Returns ``via`` itself (the same
    object) when nothing is to be added.
    """
    stamped = via
    if via.rport is True:
        stamped = stamped.with_param("received", unbracket(source_host))
        stamped = stamped.with_param("rport", str(source_port))
    elif via.host != source_host and not same_address(via.host, source_host):
        stamped = stamped.with_param("received", unbracket(source_host))
    return stamped


def stamp_via_value(value: str, source_host: str, source_port: int) -> str | None:
    """`stamp_via` on the text of one Via value: the stamped text, or None when unchanged.

    Gives ``str(stamp_via(parse_via(value), ...))`` whenever that is a new
    Via, and raises `SipParseError` where `parse_via` does. The usual
    spelling (``SIP/2.0/UDP host:port;params``, which `str` gives back
    unchanged) is stamped by editing its parameter list, without building
    `Via` objects; any other spelling goes through `stamp_via`.
    """
    match = _match_plain_via(value)
    if match is None:
        return _stamp_parsed(value, source_host, source_port)
    transport, port_text = match.group(2, 4)
    if transport != transport.upper() or (port_text is not None and port_text[0] == "0"):
        return _stamp_parsed(value, source_host, source_port)  # str(Via) respells these
    host = match.group(3)
    _port(port_text, value)
    rest = match.group(5)
    # The two usual cases, without splitting the parameters: no empty rport
    # and the sent-by is the source (nothing to stamp); an empty rport and
    # no received yet (fill the one, append the other).
    first_rport = _find_rport(rest)
    if first_rport is None or first_rport.group(1):
        if host == source_host or same_address(host, source_host):
            return None
    elif _find_received(rest) is None:
        at = first_rport.end()
        received = unbracket(source_host)
        return f"{value[: match.start(5)]}{rest[:at]}={source_port}{rest[at:]};received={received}"
    params = rest[1:].split(";") if rest else []
    keys = [param.partition("=")[0].lower() for param in params]
    rport = keys.index("rport") if "rport" in keys else -1
    if rport >= 0 and "=" not in params[rport]:
        _set_param(params, keys, "received", unbracket(source_host))
        params[rport] = f"{params[rport]}={source_port}"
    elif host == source_host or same_address(host, source_host):
        return None
    else:
        _set_param(params, keys, "received", unbracket(source_host))
    return f"{value[: match.start(5)]};{';'.join(params)}"


def _stamp_parsed(value: str, source_host: str, source_port: int) -> str | None:
    via = parse_via(value)
    stamped = stamp_via(via, source_host, source_port)
    return None if stamped is via else str(stamped)


def _set_param(params: list[str], keys: list[str], name: str, value: str) -> None:
    """`Via.with_param` on raw ``name=value`` texts (``keys``: their lower-case names)."""
    if name in keys:
        index = keys.index(name)
        params[index] = f"{params[index].partition('=')[0]}={value}"
    else:
        params.append(f"{name}={value}")
        keys.append(name)


def apply_received(request: Request, source_host: str, source_port: int) -> None:
    """Stamp the top Via of a received request in place (see `stamp_via`)."""
    headers = request.headers
    # `_header_keys`, without the call when the keys are fresh (the usual case).
    keys = request._keys if request._keys_of == headers else request._header_keys()
    if "via" not in keys:
        raise SipParseError("no Via header", status=400)
    index = keys.index("via")
    value = headers[index][1]
    if "," in value:
        value = split_values(value)[0]
    stamped = stamp_by_template(value, source_host, source_port)
    if stamped is not None:
        request._replace_via_at(index, stamped)  # the field just read: one look-up


#: A token that stands in for a branch while a stamp template is checked.
_MARKER: Final = "z9hG4bKsipsockMarker7f3a"
#: "Unchanged": the template of a Via that stamping leaves as it is.
_UNCHANGED: Final = ("", "")
#: ``(value before the branch, value after it, source host, source port)`` of a top
#: Via to the stamped text before and after its branch, or `_UNCHANGED`.
_TEMPLATES: Final[Memo[tuple[str, str, str, int], tuple[str, str]]] = Memo(max_entries=16 * 1024)


def stamp_by_template(value: str, source_host: str, source_port: int) -> str | None:
    """`stamp_via_value`, through a template for the Via with its branch cut out.

    A peer's requests differ in their top Via only by the branch, and
    stamping never looks at a branch made of token characters: the stamped
    text before and after it is remembered per Via and source address, and
    checked when made by stamping the Via and a copy with a marker token in
    place of its branch (kept only when both agree). Anything else (no
    ``;branch=`` spelled so, a branch that is not a token, a Via that does
    not stamp alike) is stamped by `stamp_via_value` itself.
    """
    start = value.find(";branch=") + 8
    if start < 8:
        return stamp_via_value(value, source_host, source_port)
    end = value.find(";", start)
    if end < 0:
        end = len(value)
    branch = value[start:end]
    if is_token(branch) is None:
        return stamp_via_value(value, source_host, source_port)
    key = (value[:start], value[end:], source_host, source_port)
    template = _TEMPLATES.get(key)
    if template is None:
        stamped = stamp_via_value(value, source_host, source_port)  # raises for a bad Via
        _learn_template(key, branch, stamped)
        return stamped
    if template == _UNCHANGED:  # not `is`: mypyc copies a Final tuple where it is used
        return None
    return template[0] + branch + template[1]


def _learn_template(key: tuple[str, str, str, int], branch: str, stamped: str | None) -> None:
    """Remember the template of ``key`` when the marker copy stamps as ``stamped`` does."""
    before, after, source_host, source_port = key
    try:
        marked = stamp_via_value(before + _MARKER + after, source_host, source_port)
    except (SipParseError, ValueError):
        return
    if marked is None or stamped is None:
        if marked is not stamped:
            return
        template = _UNCHANGED
    else:
        around = marked.split(_MARKER)
        if len(around) != 2 or around[0] + branch + around[1] != stamped:
            return
        template = (around[0], around[1])
    size = len(before) + len(after) + len(source_host) + len(template[0]) + len(template[1])
    _TEMPLATES.remember(key, template, size)


__all__ = [
    "MAGIC_COOKIE",
    "Via",
    "apply_received",
    "check_via",
    "make_via",
    "new_branch",
    "parse_via",
    "same_address",
    "stamp_by_template",
    "stamp_via",
    "stamp_via_value",
    "stateless_branch",
]
