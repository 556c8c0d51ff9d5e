"""Which HTTP requests the loopback MI listener refuses: the browser rules (pure).

The HTTP MI has no authentication: it trusts whoever can reach the loopback
address. A web page open in a browser on the same host can reach it too,
so these rules keep browsers out while the stock clients (``opensips-mi``,
``opensips-cli``: urllib, ``Host: <address>:<port>``, ``Content-Type:
application/json``, no ``Origin``) get through:

* ``Host`` must name the listening address or ``localhost`` (a loopback
  IP literal is accepted too), with the listening port or none: a page
  whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name;
* ``Origin``, when sent, must be ``http://`` that same host and port
  (``null`` and every other origin are foreign); ``Sec-Fetch-Site``, when
  sent, must be ``same-origin`` or ``none``;
* a JSON-RPC POST must say ``Content-Type: application/json``: a browser
  cannot send that cross-origin without a CORS pre-flight, which is never
  answered (the ``text/plain`` "simple request" is refused).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

#: Host names accepted besides the listening address.
LOCAL_NAMES: Final = frozenset({"localhost", "localhost."})
#: ``Sec-Fetch-Site`` values of a request that no other site started.
SAME_SITE_FETCHES: Final = frozenset({"same-origin", "none"})
JSON_TYPE: Final = "application/json"

_HOST_RE: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN_RE: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>[^/?#]*)/?")


@dataclass(frozen=True)
class Refusal:
    """A refused request: the HTTP status, the rule's name (for logs) and why."""

    status: int
    rule: str
    reason: str


def _is_local_host(name: str, local_address: str) -> bool:
    name = name.lower()
    if name in LOCAL_NAMES:
        return True
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    try:
        return address == ipaddress.ip_address(local_address)
    except ValueError:
        return False


def host_matches(value: str, local_address: str, local_port: int, default_port: int = 80) -> bool:
    """Whether a ``host[:port]`` names this listener (address or localhost, same port)."""
    match = _HOST_RE.fullmatch(value.strip())
    if match is None or not match["host"]:
        return False
    port = int(match["port"]) if match["port"] else default_port
    return port == local_port and _is_local_host(match["host"], local_address)


def _printable(value: str) -> str:
    return repr(value[:100])


def request_refusal(
    *,
    host: str | None,
    origin: str | None,
    fetch_site: str | None,
    local_address: str,
    local_port: int,
) -> Refusal | None:
    """Why a request (any path, any method) is refused as foreign; None to serve it.

    ``host``, ``origin`` and ``fetch_site`` are the headers' values (None when
    absent); ``local_address`` and ``local_port`` the listening socket's.
    A request without ``Host`` (HTTP/1.0) is no browser's and is served.
    """
    if host is not None and not host_matches(host, local_address, local_port):
        return Refusal(
            403,
            "host",
            f"Host {_printable(host)} does not name this listener "
            f"({local_address}:{local_port} or localhost:{local_port})",
        )
    if origin is not None:
        match = _ORIGIN_RE.fullmatch(origin.strip())
        if (
            match is None
            or match["scheme"].lower() != "http"
            or not host_matches(match["rest"], local_address, local_port)
        ):
            return Refusal(403, "origin", f"foreign Origin {_printable(origin)}")
    if fetch_site is not None and fetch_site.strip().lower() not in SAME_SITE_FETCHES:
        return Refusal(403, "origin", f"request started by another site ({_printable(fetch_site)})")
    return None


def content_type_refusal(content_type: str | None) -> Refusal | None:
    """Why a JSON-RPC POST body is refused for its type; None for ``application/json``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_TYPE:
        return None
    given = _printable(content_type) if content_type is not None else "none"
    return Refusal(415, "content_type", f"Content-Type must be {JSON_TYPE} (given: {given})")
