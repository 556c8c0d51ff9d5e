"""The rules of the stateless proxy (RFC 3261 section 16), as pure functions.

Nothing here sends, resolves or logs: `sipsock.apps.proxy` asks these
functions what to do and does it. One import path for three jobs:

* **Routes** (`ProxyRoute`, `parse_route`, `find_route`): the operator's
  ``[[proxy.route]]`` tables, checked with the rest of the configuration
  (`sipsock.config.proxy`), matched on the receiving socket's tag, the
  Request-URI host and the method. **Destinations** (`SipUri`, `parse_uri`,
  `Destination`): where a request goes, from a configured SIP URI, a Route
  entry or the Request-URI (`sipsock.sip.uri`).
* **Forwarding rules** (`forwarding`): Max-Forwards (`next_max_forwards`),
  the branch of the proxy's Via (`proxy_branch`), loop detection
  (`is_loop`), the copy sent on (`forward_copy`) and which requests get a
  Record-Route (`wants_record_route`).
* **Socket references** (`references`): how the proxy names one of its
  sockets inside the messages it sends (its Via and its Record-Route) so
  that a response or an in-dialog request handled by any process finds the
  socket again, and which leading Route entries are its own (`own_routes`).

Modules imported by their own path: `splice` (the bytes sent: the received
bytes with the proxy's changes spliced in), `wire` (the same joined from the
parsed fields, for a header section `splice` cannot cut) and `viatemplate`
(a Via rule remembered per peer's Via template); `responsehop` reads a
response's next Via.
"""

from sipsock.apps.proxyrules.forwarding import (
    DEFAULT_MAX_FORWARDS,
    DIALOG_METHODS,
    HeaderScan,
    SplitVia,
    forward_copy,
    is_loop,
    is_own_branch,
    loop_key,
    max_forwards_of,
    next_max_forwards,
    proxy_branch,
    route_values,
    scan_headers,
    split_top_via,
    transaction_id,
    wants_record_route,
)
from sipsock.apps.proxyrules.references import (
    ROUTE_PARAM,
    VIA_PARAM,
    OwnRoutes,
    ViaMarker,
    describe_ref,
    is_own_via,
    is_socket_address,
    marker_of,
    own_routes,
    parse_socket_ref,
    proxy_via,
    record_route_values,
    route_entry,
    same_host,
    socket_ref,
    via_marker,
)
from sipsock.config.proxy import (
    FOLLOW_INVITE,
    REQUEST_URI,
    ROUTE_KEYS,
    ProxyRoute,
    RouteError,
    find_route,
    parse_route,
    parse_routes,
)
from sipsock.sip.uri import (
    Destination,
    SipUri,
    UriError,
    destination_of,
    host_matches,
    parse_uri,
    request_uri_host,
)

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "DIALOG_METHODS",
    "FOLLOW_INVITE",
    "REQUEST_URI",
    "ROUTE_KEYS",
    "ROUTE_PARAM",
    "VIA_PARAM",
    "Destination",
    "HeaderScan",
    "OwnRoutes",
    "ProxyRoute",
    "RouteError",
    "SipUri",
    "SplitVia",
    "UriError",
    "ViaMarker",
    "describe_ref",
    "destination_of",
    "find_route",
    "forward_copy",
    "host_matches",
    "is_loop",
    "is_own_branch",
    "is_own_via",
    "is_socket_address",
    "loop_key",
    "marker_of",
    "max_forwards_of",
    "next_max_forwards",
    "own_routes",
    "parse_route",
    "parse_routes",
    "parse_socket_ref",
    "parse_uri",
    "proxy_branch",
    "proxy_via",
    "record_route_values",
    "request_uri_host",
    "route_entry",
    "route_values",
    "same_host",
    "scan_headers",
    "socket_ref",
    "split_top_via",
    "transaction_id",
    "via_marker",
    "wants_record_route",
]
