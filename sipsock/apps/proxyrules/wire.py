"""The bytes the proxy sends, built in one pass from the received fields (RFC 3261 16.6, 16.7).

Pure. For a message whose header section `sipsock.apps.proxyrules.splice`
cannot cut into one received line per field (folded lines, bare LF line
ends, or no received bytes at hand): the usual message is spliced there.
`forward_bytes` gives ``forward_copy(...).serialize()`` and
`response_bytes_without_top_via` gives what `split_top_via` and the copy's
``serialize()`` give, byte for byte, without building a second `Message`
and walking its fields again: every field line is joined once, with the
canonical names the parser already computed. A message whose
Content-Length is not exactly one field equal to the body length (the case
``serialize()`` rewrites) is left to the message-level rules.
`read_plain_via` reads a plain Via value the way `parse_via` does, only
the facts the proxy's response hop asks for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sipsock.apps.proxyrules.forwarding import forward_copy
from sipsock.apps.proxyrules.splice import ResponseCut, splice_request
from sipsock.apps.proxyrules.viatemplate import TemplateRule
from sipsock.sip import Request, Response
from sipsock.sip.grammar import TOKEN_CHARS, canonical_name, split_values

_T = f"[{TOKEN_CHARS}]+"
#: The plain Via `parse_via` reads with its own plain pattern (no blank but the
#: one after the transport, no quote, no IPv6): transport, host, port digits
#: and the parameters (no ``;`` inside a value).
_match_plain_via: Final = re.compile(
    rf"{_T}/{_T}/({_T}) ([A-Za-z0-9.\-]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*)"
).fullmatch
#: The proxy's own Via parameter naming the receiving socket (`references.VIA_PARAM`).
_MARKER: Final = "sipsock-in"


@dataclass(slots=True, init=False)
class PlainVia:
    """What `parse_via` gives of a plain Via value, as the response hop reads it.

    ``transport`` upper case, ``host`` and ``port`` (None: none written) of
    the sent-by, ``branch`` and ``marker`` (the ``sipsock-in`` parameter):
    the value of the first parameter of that name, ``""`` when it has none,
    None when absent (`Via.param`).
    """

    transport: str
    host: str
    port: int | None
    branch: str | None
    marker: str | None

    def __init__(
        self, transport: str, host: str, port: int | None, branch: str | None, marker: str | None
    ) -> None:
        # Written out, not generated: see `sipsock.apps.proxyrules.forwarding.HeaderScan`.
        self.transport = transport
        self.host = host
        self.port = port
        self.branch = branch
        self.marker = marker


def read_plain_via(value: str) -> PlainVia | None:
    """`PlainVia` of a plain Via value; None for any other (`parse_via` reads it).

    None too for a port out of range, which `parse_via` refuses.
    """
    match = _match_plain_via(value)
    if match is None:
        return None
    transport, host, port_text, params = match.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port <= 65535:
            return None
    branch: str | None = None
    marker: str | None = None
    if params:
        for param in params[1:].split(";"):
            key, _, text = param.partition("=")
            key = key.lower()
            if key == "branch":
                if branch is None:
                    branch = text
            elif key == _MARKER and marker is None:
                marker = text
    return PlainVia(transport.upper(), host, port, branch, marker)


def _with_branch(plain: PlainVia | None, branch: str) -> PlainVia | None:
    if plain is None:
        return None
    return PlainVia(plain.transport, plain.host, plain.port, branch, plain.marker)


#: `read_plain_via`, remembered per Via template (the proxy's own Vias but their branch).
own_via_facts: TemplateRule[PlainVia | None] = TemplateRule(
    read_plain_via, lambda plain: plain.branch if plain is not None else None, _with_branch
)


def forward_bytes(
    request: Request,
    *,
    via: str,
    record_route: Sequence[str] = (),
    max_forwards: int,
    drop_routes: int = 0,
    keys: Sequence[str] | None = None,
) -> bytes:
    """``forward_copy(request, ...).serialize()``, joined in one pass (see `forward_copy`)."""
    fields = request.headers
    if keys is None or len(keys) != len(fields):
        keys = [canonical_name(name) for name, _ in fields]
    body = request.body
    if keys.count("content-length") != 1 or (
        fields[keys.index("content-length")][1] != str(len(body))
    ):
        # ``serialize`` rewrites the Content-Length: the message-level rules.
        return forward_copy(
            request,
            via=via,
            record_route=record_route,
            max_forwards=max_forwards,
            drop_routes=drop_routes,
            keys=keys,
        ).serialize()
    # Every line as ``serialize`` writes it, then the one rule of 16.6 (`splice_request`).
    lines = [f"{request.method} {request.uri} {request.version}"]
    lines += [f"{name}: {value}" for name, value in fields]
    return splice_request(
        request,
        lines,
        via=via,
        record_route=record_route,
        max_forwards=max_forwards,
        drop_routes=drop_routes,
        keys=keys,
    )


def response_bytes_without_top_via(response: Response) -> ResponseCut | None:
    """The top Via value of ``response`` and its serialisation without that value.

    The same text `split_top_via` parses (here as received, not parsed: the
    caller reads it, `read_plain_via` else `parse_via`, which raises where
    `split_top_via` did), the same next Via and the same bytes as its copy's
    ``serialize()``. None when there is no Via.
    """
    fields = response.headers
    keys = response._header_keys()
    if "via" not in keys:
        return None
    at = keys.index("via")
    name, value = fields[at]
    values = split_values(value) if "," in value else [value]
    top = values[0]
    next_via: str | None = None
    if len(values) > 1:
        # The rest of the top field stays, the next Via first in it.
        value = ", ".join(values[1:])
        kept = fields.copy()
        kept[at] = (name, value)
        next_via = split_values(value)[0] if "," in value else value
    else:
        kept = fields[:at] + fields[at + 1 :]
        if keys.count("via") > 1:
            value = fields[keys.index("via", at + 1)][1]
            next_via = split_values(value)[0] if "," in value else value
    body = response.body
    if keys.count("content-length") == 1 and (
        fields[keys.index("content-length")][1] == str(len(body))
    ):
        start = f"{response.version} {response.code} {response.reason}"
        text = "\r\n".join((start, *map(": ".join, kept), "", ""))
        return ResponseCut(top, next_via, text.encode("utf-8", "surrogateescape") + body)
    # ``serialize`` rewrites the Content-Length: the message-level rules.
    copy = Response(response.code, response.reason, kept, body, response.version)
    return ResponseCut(top, next_via, copy.serialize())
