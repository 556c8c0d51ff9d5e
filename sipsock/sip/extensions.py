"""`unsupported_options`: the option tags of Require / Proxy-Require a SIP element lacks (pure).

RFC 3261 8.2.2.3: a UAS answers a request whose Require names an extension
it does not support with 420 Bad Extension and an Unsupported header
listing them (never for ACK, nor for CANCEL). RFC 3261 16.3 item 6: a
proxy does the same for Proxy-Require.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import is_token
from sipsock.sip.message import Request

#: Requests never answered 420 for their Require (RFC 3261 8.2.2.3).
EXEMPT_METHODS: Final = frozenset({"ACK", "CANCEL"})


def unsupported_options(values: Iterable[str], supported: Iterable[str]) -> list[str]:
    """The option tags in the header ``values`` that are not in ``supported``.

    ``values`` are Require or Proxy-Require values, one tag each (as
    ``Message.get_all`` splits them); empty ones are ignored. Tags compare
    without regard to case; each unsupported one is listed once, in the
    order given. A value that is not a token raises `SipParseError` (400):
    it could not be written back into an Unsupported header.
    """
    known = {tag.lower() for tag in supported}
    missing: dict[str, str] = {}
    for value in values:
        tag = value.strip(" \t")
        if not tag:
            continue
        if not is_token(tag):
            raise SipParseError(f"malformed option tag {tag[:40]!r}", status=400)
        if tag.lower() not in known:
            missing.setdefault(tag.lower(), tag)
    return list(missing.values())


def required_but_unsupported(request: Request, supported: Iterable[str]) -> list[str]:
    """The Require option tags of ``request`` a UAS supporting ``supported`` must refuse (420).

    Empty for ACK and CANCEL, which are never refused for their Require.
    """
    if request.method in EXEMPT_METHODS:
        return []
    return unsupported_options(request.get_all("require"), supported)
