"""`StatelessProxy`: the built-in stateless SIP proxy (RFC 3261 section 16.11).

Requests are forwarded, one by one and without any transaction state:

1. Max-Forwards 0 is answered 483 (a request without one gets 70); a
   request that carries a Via of this proxy with its own loop key is
   answered 482 (`sipsock.apps.proxyrules.is_loop`); a Proxy-Require (this
   proxy supports no extension) is answered 420 with Unsupported.
2. Leading Route entries that name this proxy are removed (loose routing).
   A Route left over is the next hop; a request that came with this proxy's
   Record-Route and no other Route goes where its Request-URI points, out of
   the socket the Record-Route names. Any other request takes the first
   matching ``[[proxy.route]]`` (404 when none matches).
3. The outgoing socket is the route's ``out_tag`` (503 naming the tag when no
   such socket is open), else the receiving socket when its protocol fits,
   else the first open socket of the destination's protocol.
4. The copy gets Max-Forwards minus one, a Via of the outgoing socket
   (advertised address, a branch derived from the request, so a
   retransmission, its CANCEL and its non-2xx ACK get the same one) and, for
   a dialog-creating request, a Record-Route (two when the two sockets
   differ). Every other header line goes on as received, the body byte
   for byte (`sipsock.apps.proxyrules.splice`). Host names are resolved
   (A/AAAA); a send that fails (connection refused, timeout, no address) is
   answered 503.

Responses whose top Via is this proxy's (branch shape and sent-by) lose that
Via and go where the next Via says (`route_response`), through the socket
the request came in on, which the proxy's Via names; any other response is
dropped. An ACK is never answered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from mypy_extensions import mypyc_attr
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from sipsock.addresses import normal_ip
from sipsock.apps.dispatch import error_phrase
from sipsock.apps.interface import ISipApplication, MessageContext
from sipsock.apps.proxyrules import (
    VIA_PARAM,
    Destination,
    OwnRoutes,
    ProxyRoute,
    UriError,
    describe_ref,
    destination_of,
    find_route,
    is_loop,
    is_own_branch,
    is_own_via,
    is_socket_address,
    marker_of,
    max_forwards_of,
    next_max_forwards,
    own_routes,
    parse_routes,
    parse_uri,
    proxy_branch,
    proxy_via,
    record_route_values,
    request_uri_host,
    scan_headers,
    socket_ref,
    wants_record_route,
)
from sipsock.apps.proxyrules.responsehop import next_hop
from sipsock.apps.proxyrules.splice import received_lines, splice_request, splice_response
from sipsock.apps.proxyrules.wire import (
    forward_bytes,
    own_via_facts,
    response_bytes_without_top_via,
)
from sipsock.apps.resolver import IResolve, ResolveError, ThreadResolver
from sipsock.logevents import logger_of
from sipsock.seams import Listener
from sipsock.sip import (
    Request,
    Response,
    SipParseError,
    default_port,
    make_response,
    parse_via,
    route_response,
)
from sipsock.sip.extensions import unsupported_options
from sipsock.sip.grammar import reason_phrase
from sipsock.sip.memo import Memo
from sipsock.sip.routing import CONNECT_BACK_IMPOSSIBLE, RELIABLE_TRANSPORTS
from sipsock.sockdef import SocketDef

#: Seconds between two log lines about the same problem.
LOG_PERIOD: Final = 10.0
#: Problems remembered for log throttling, at most.
LOG_KEYS: Final = 256
#: Characters of a problem kept as its throttling key.
LOG_KEY_TEXT: Final = 200
#: Pairs of sockets whose Record-Route values are remembered, at most.
RECORD_ROUTE_PAIRS: Final = 64
#: Transports whose server certificate is checked against the host name.
_VERIFIED_BY_NAME: Final = frozenset({"tls", "wss"})


class RejectedError(Exception):
    """A request the proxy answers itself: ``code``, the ``reason`` for the phrase, ``headers``."""

    def __init__(self, code: int, reason: str = "", headers: list[tuple[str, str]] | None = None):
        self.code = code
        self.reason = reason
        self.headers = headers or []
        super().__init__(f"{code} {reason}")


@dataclass
class ProxyCounters:
    """What the proxy did: forwarded messages, its own answers by code, drops."""

    requests: int = 0
    responses: int = 0
    answered: dict[int, int] = field(default_factory=dict)
    dropped_responses: int = 0
    failed_sends: int = 0


class _Hop:
    """A decided forward: the bytes of the copy to send, from which socket, to where."""

    # (Not a NamedTuple: compiled, its constructor would stay interpreted.)
    def __init__(self, data: bytes, out: Listener, destination: Destination, transport: str):
        self.data = data
        self.out = out
        self.destination = destination
        self.transport = transport


class _LogThrottle:
    """Lets one log line per key through every `LOG_PERIOD` seconds."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> int | None:
        """None to stay silent; else how many lines were held back since the last one."""
        key = key[:LOG_KEY_TEXT]  # a reason may quote what a peer sent
        now = self._clock.seconds()
        last = self._last.get(key)
        if last is not None and now - last[0] < LOG_PERIOD:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._last) >= LOG_KEYS:
            self._last.clear()
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0


# Compiled by mypyc, a class takes subclasses written in Python only when it
# says so; it implements `ISipApplication` below the class (a class decorator
# would make it an interpreted class, whose compiled methods take no subclass).
@mypyc_attr(allow_interpreted_subclasses=True)
class StatelessProxy:
    """The built-in stateless proxy (see the module).

    ``routes`` are `ProxyRoute` objects or ``[[proxy.route]]`` tables
    (checked here; a bad one raises `RouteError`). ``record_route`` adds
    Record-Route to dialog-creating requests. ``secret`` salts the branch
    and loop key: every process of one proxy must share it, and two proxies
    should not (the daemon derives one per installation when the
    configuration has none). ``resolver`` turns host names into addresses.
    """

    log: Logger

    def __init__(
        self,
        routes: Iterable[ProxyRoute | Mapping[str, Any]] = (),
        *,
        record_route: bool = True,
        secret: str = "",
        resolver: IResolve | None = None,
        reactor: Any = None,
    ) -> None:
        self.log = logger_of(self)  # (a compiled class holds no ``log = Logger()``)
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        if not isinstance(record_route, bool):
            raise ValueError(f"record_route must be true or false, not {record_route!r}")
        if not isinstance(secret, str):
            raise ValueError("secret must be a string")
        self.routes: tuple[ProxyRoute, ...] = parse_routes(routes)
        self.record_route = record_route
        self.secret = secret
        self.resolver: IResolve = resolver or ThreadResolver(reactor)
        self.counters = ProxyCounters()
        self._throttle = _LogThrottle(reactor)
        #: Whether a route matches on the Request-URI host (else it is not read).
        self._match_host = any(route.uri_host is not None for route in self.routes)
        self._record_routes: dict[tuple[Any, ...], list[str]] = {}

    # --- ISipApplication ------------------------------------------------------------

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        """Forward a request or a response."""
        if isinstance(message, Response):
            self.forward_response(message, context)
        else:
            self.forward_request(message, context)

    # --- requests -------------------------------------------------------------------

    def forward_request(self, request: Request, context: MessageContext) -> None:
        """Forward ``request`` (or answer it when it cannot be forwarded)."""
        try:
            hop = self.plan(request, context)
        except RejectedError as rejection:
            self.answer(request, context, rejection.code, rejection.reason, rejection.headers)
            return
        sending = self._send_request(hop, context)
        if _sent_at_once(sending):
            self.counters.requests += 1
            return
        sending.addCallbacks(
            self._request_sent, self._send_failed, errbackArgs=(request, context, hop)
        )

    def plan(self, request: Request, context: MessageContext) -> _Hop:
        """Decide where ``request`` goes and build the copy; `RejectedError` says why not."""
        scan = scan_headers(request)
        max_forwards = next_max_forwards(max_forwards_of(scan))
        if max_forwards is None:
            raise RejectedError(483)
        if is_loop(request, self.secret, scan):
            raise RejectedError(482)
        if scan.proxy_require:
            try:
                unsupported = unsupported_options(scan.proxy_require, ())
            except SipParseError as bad_option:
                raise RejectedError(400, bad_option.reason) from None
            if unsupported:  # RFC 3261 16.3 item 6: this proxy supports no extension
                raise RejectedError(420, headers=[("Unsupported", ", ".join(unsupported))])
        receiving = context.socket
        routes = scan.routes
        own = (
            own_routes(routes, receiving, partial(_definition_of, context))
            if routes
            else _NO_OWN_ROUTES
        )
        explicit: str | int | None = None
        try:
            if len(routes) > own.count:
                # Loose routing: the next Route entry is the next hop.
                destination = destination_for(routes[own.count])
                explicit = own.ref
            elif own.count:
                # In a dialog this proxy record-routed: to the Request-URI.
                destination = destination_for(request.uri)
                explicit = own.ref
            else:
                uri_host = request_uri_host(request.uri) if self._match_host else None
                route = find_route(self.routes, receiving.tag, uri_host, request.method)
                if route is None:
                    raise RejectedError(404, "no route")
                destination = route.destination or destination_for(request.uri)
                explicit = route.out_tag
        except UriError as bad_uri:
            raise RejectedError(400, bad_uri.reason) from None
        out, transport = self._outgoing(context, destination, explicit, own.count > 0)
        inbound = socket_ref(receiving, context.slot)
        peer_port = context.peer[1] if receiving.is_stream else None
        via = proxy_via(out.sdef, proxy_branch(request, self.secret, scan), inbound, peer_port)
        record_route: list[str] = []
        if self.record_route and wants_record_route(request, scan):
            record_route = self._record_route(receiving, inbound, out)
        lines = received_lines(request)
        if lines is not None:
            # The lines it does not touch go on as received (RFC 3261 16.6).
            data = splice_request(
                request,
                lines,
                via=via,
                record_route=record_route,
                max_forwards=max_forwards,
                drop_routes=own.count,
                keys=scan.keys,
            )
        else:
            data = forward_bytes(
                request,
                via=via,
                record_route=record_route,
                max_forwards=max_forwards,
                drop_routes=own.count,
                keys=scan.keys,
            )
        return _Hop(data, out, destination, transport)

    def _record_route(self, receiving: SocketDef, inbound: str | None, out: Listener) -> list[str]:
        """`record_route_values` for these sockets (remembered: a few pairs of sockets)."""
        key = (receiving, inbound, out.sdef, out.slot)
        values = self._record_routes.get(key)
        if values is None:
            values = record_route_values(
                receiving, inbound, out.sdef, socket_ref(out.sdef, out.slot)
            )
            if len(self._record_routes) >= RECORD_ROUTE_PAIRS:
                self._record_routes.clear()
            self._record_routes[key] = values
        return list(values)

    def _outgoing(
        self,
        context: MessageContext,
        destination: Destination,
        explicit: str | int | None,
        by_record_route: bool,
    ) -> tuple[Listener, str]:
        """The outgoing socket and the transport (see the module, step 3)."""
        if explicit is not None or by_record_route:
            out = context.find_socket(explicit)
            if out is None:
                what = describe_ref(explicit) if explicit is not None else "the receiving socket"
                raise RejectedError(503, f"{what} is not open")
            proto = out.sdef.proto
            if destination.transport is not None and destination.transport != proto:
                what = describe_ref(explicit) if explicit is not None else "the receiving socket"
                raise RejectedError(503, f"{what} is {proto}, the destination {destination} is not")
            return out, proto
        transport = destination.transport or "udp"
        receiving = context.find_socket(None)
        if receiving is not None and receiving.sdef.proto == transport:
            return receiving, transport
        first = context.directory.first(transport)
        if first is None:
            raise RejectedError(503, f"no {transport} socket is open")
        return first, transport

    def _send_request(self, hop: _Hop, context: MessageContext) -> Deferred[None]:
        host, port = hop.destination.address(hop.transport)
        address = normal_address(host)
        if address is not None or hop.transport in _VERIFIED_BY_NAME:
            # An address, or a name TLS checks the server's certificate
            # against: the socket connects to the name (and keeps the
            # connection under it).
            return hop.out.send(hop.data, (address or host, port))
        return self._resolve(host, hop.out.sdef).addCallback(_send_to, hop.out, hop.data, port)

    def _request_sent(self, _: None) -> None:
        self.counters.requests += 1

    def _send_failed(
        self, failure: Failure, request: Request, context: MessageContext, hop: _Hop
    ) -> None:
        self.counters.failed_sends += 1
        reason = _failure_reason(failure)
        self._warn(
            f"send:{hop.out.sdef.socket_text}:{hop.destination}",
            "socket {socket}: cannot forward {method} to {destination}: {reason}",
            socket=hop.out.sdef.socket_text,
            method=request.method,
            destination=str(hop.destination),
            reason=reason,
        )
        self.answer(request, context, 503, f"cannot reach {hop.destination}: {_root_cause(reason)}")

    def answer(
        self,
        request: Request,
        context: MessageContext,
        code: int,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer ``request`` with ``code`` and ``headers`` (an ACK is only logged)."""
        self.counters.answered[code] = self.counters.answered.get(code, 0) + 1
        if code in (400, 503):
            self._warn(
                f"answer:{code}:{reason}",
                "socket {socket}: {method} from {peer} answered {code}: {reason}",
                socket=context.socket.socket_text,
                method=request.method,
                peer=context.peer,
                code=code,
                reason=reason or reason_phrase(code),
            )
        if request.method == "ACK":
            return
        phrase = error_phrase(code, reason)
        try:
            response = make_response(
                request, code, phrase, to_tag=self.to_tag(request), headers=headers or ()
            )
        except SipParseError:
            return
        context.reply(response)

    def to_tag(self, request: Request) -> str:
        """A To tag for the proxy's own answers, the same for every retransmission."""
        key = f"{self.secret}|{request.get('call-id')}|{request.get('from')}|{request.cseq[0]}"
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8)
        return digest.hexdigest()

    # --- responses ------------------------------------------------------------------

    def forward_response(self, response: Response, context: MessageContext) -> None:
        """Remove the proxy's Via and send the response on towards the next one."""
        lines = received_lines(response)
        if lines is not None:
            # The lines after its top Via value go on as received (RFC 3261 16.7).
            cut = splice_response(response, lines)
        else:
            cut = response_bytes_without_top_via(response)
        if cut is None:
            raise SipParseError("no Via header", status=400)
        sdef = context.socket
        plain = own_via_facts(cut.top)
        if plain is not None:
            port = plain.port or default_port(plain.transport)
            own = is_own_branch(plain.branch) and is_socket_address(sdef, plain.host, port)
            marker_text = plain.marker
        else:
            top = parse_via(cut.top)
            own = is_own_via(top, sdef)
            marker_text = top.param(VIA_PARAM)
        if not own:
            self.counters.dropped_responses += 1
            self.log.debug(
                "socket {socket}: response {code} from {peer} dropped: "
                "its top Via {via} is not this proxy's",
                socket=sdef.socket_text,
                code=response.code,
                peer=context.peer,
                via=str(parse_via(cut.top)),
            )
            return
        marker = marker_of(marker_text or "")
        data = cut.data
        if cut.next_via is None:
            self._drop_response(context, response, "no Via left after the proxy's own")
            return
        hop = next_hop(cut.next_via)
        if hop is not None:
            transport = hop.transport
        else:
            try:
                next_via = parse_via(cut.next_via)
            except SipParseError:
                self._drop_response(context, response, "no Via left after the proxy's own")
                return
            transport = next_via.transport
        if marker.ref is not None:
            inbound = context.find_socket(marker.ref)
        else:
            inbound = context.directory.first(transport.lower())
        if inbound is None:
            what = describe_ref(marker.ref) if marker.ref is not None else f"{transport} socket"
            self._drop_response(context, response, f"{what} is not open")
            return
        if hop is not None:
            sending = self._send_response(data, inbound, (hop.host, hop.port), resolve=hop.resolve)
        elif transport in RELIABLE_TRANSPORTS:
            # Back on the connection the request came on, else (TCP, TLS) a new one.
            route = route_response(next_via, connection_open=True)
            first = (route.host, marker.peer_port or route.port)
            sending = self._send_response(data, inbound, first, resolve=False)
            if transport not in CONNECT_BACK_IMPOSSIBLE:
                fallback = route_response(next_via, connection_open=False)
                again = (fallback.host, fallback.port)
                if again != first:
                    sending.addErrback(
                        self._send_response_again, data, inbound, again, fallback.resolve
                    )
        else:
            route = route_response(next_via)
            sending = self._send_response(
                data, inbound, (route.host, route.port), resolve=route.resolve
            )
        if _sent_at_once(sending):
            self.counters.responses += 1
            return
        sending.addCallbacks(
            self._response_sent,
            self._response_failed,
            errbackArgs=(context, inbound, response),
        )

    def _send_response(
        self,
        data: bytes,
        out: Listener,
        address: tuple[str, int],
        *,
        resolve: bool,
    ) -> Deferred[None]:
        host, port = address
        ip = normal_address(host)
        if ip is not None or not resolve:
            return out.send(data, (ip or host, port))
        return self._resolve(host, out.sdef).addCallback(_send_to, out, data, port)

    def _send_response_again(
        self, _: Failure, data: bytes, out: Listener, address: tuple[str, int], resolve: bool
    ) -> Deferred[None]:
        """`_send_response` after the first address failed (an errback)."""
        return self._send_response(data, out, address, resolve=resolve)

    def _response_sent(self, _: None) -> None:
        self.counters.responses += 1

    def _response_failed(
        self, failure: Failure, context: MessageContext, out: Listener, response: Response
    ) -> None:
        self.counters.failed_sends += 1
        self._drop_response(
            context,
            response,
            f"cannot send it from {out.sdef.socket_text}: {_failure_reason(failure)}",
        )

    def _drop_response(self, context: MessageContext, response: Response, reason: str) -> None:
        self.counters.dropped_responses += 1
        self._warn(
            f"response:{reason}",
            "socket {socket}: response {code} from {peer} dropped: {reason}",
            socket=context.socket.socket_text,
            code=response.code,
            peer=context.peer,
            reason=reason,
        )

    # --- helpers --------------------------------------------------------------------

    def _resolve(self, host: str, out: SocketDef) -> Deferred[str]:
        """An address of the name ``host`` in the family of socket ``out``."""
        return self.resolver.resolve(host).addCallback(_address_for, host, out)

    def _warn(self, key: str, format: str, **fields: Any) -> None:
        held = self._throttle.allow(key)
        if held is None:
            return
        if held:
            format += " ({held} more like this in the last {period:g} s)"
            fields.update(held=held, period=LOG_PERIOD)
        self.log.warn(format, **fields)


classImplements(StatelessProxy, ISipApplication)

_NO_OWN_ROUTES: Final = OwnRoutes()


def _sent_at_once(sending: Deferred[None]) -> bool:
    """Whether ``sending`` has already succeeded, its chain run to the end.

    A UDP send is done when it returns: counting it at once spares the
    callbacks the Deferred would run. (The same reading of a fired Deferred
    as `sipsock.deferreds.settle`.)
    """
    return (
        sending.called
        and sending.result is None
        and not sending.paused
        and not sending._runningCallbacks
        and not sending._callbacks
    )


def _definition_of(context: MessageContext, ref: str | int) -> SocketDef | None:
    """The definition of the socket ``ref`` names, when it is open (`own_routes`'s lookup)."""
    listener = context.find_socket(ref)
    return listener.sdef if listener is not None else None


def _address_for(addresses: list[str], host: str, out: SocketDef) -> str:
    """The first of ``addresses`` (of the name ``host``) in the family of socket ``out``."""
    for address in addresses:
        if (":" in address) == out.is_ipv6:
            return address
    family = "IPv6" if out.is_ipv6 else "IPv4"
    raise ResolveError(host, f"no {family} address (for socket {out.socket_text})")


def _send_to(address: str, out: Listener, data: bytes, port: int) -> Deferred[None]:
    """Send ``data`` from ``out`` to ``address`` (a resolved name) and ``port``."""
    return out.send(data, (address, port))


#: Hosts to their normal form (bounded in entries and bytes; long hosts not kept).
_addresses: Final[Memo[str, str | None]] = Memo(max_bytes=512 * 1024, max_item=128)


def normal_address(host: str) -> str | None:
    """An IP address in the form the transports use (IPv6 compressed, no brackets).

    None when ``host`` is a name. Memoised (bounded): ``ipaddress`` is slow and
    the same few hosts come back in every message.
    """
    known = _addresses.get(host, "")
    if known != "":
        return known
    address = normal_ip(host, zone="keep")
    return _addresses.remember(host, address, len(host) + len(address or ""))


#: URIs (Request-URIs, Route entries) to their destination or why they have none.
_destinations: Final[Memo[str, Destination | UriError]] = Memo(max_bytes=512 * 1024, max_item=512)


def destination_for(uri: str) -> Destination:
    """`destination_of` the URI text ``uri``; `UriError` when it names none.

    Memoised (bounded): the in-dialog requests of every call to one callee
    carry its same Contact, and the same Route entries.
    """
    known = _destinations.get(uri)
    if known is None:
        try:
            known = destination_of(parse_uri(uri))
        except UriError as error:
            known = error
        _destinations.remember(uri, known, 3 * len(uri))
    if isinstance(known, UriError):
        raise UriError(known.reason)
    return known


def _root_cause(reason: str) -> str:
    """The last part of a nested error message, for a reason phrase.

    ``"cannot send to 127.0.0.1:5080 through tcp:...: Connection was refused
    by other side: 111: Connection refused."`` gives ``"Connection refused"``.
    """
    parts = [part.strip(" .") for part in reason.split(": ")]
    parts = [part for part in parts if part and not part.isdigit()]
    return parts[-1] if parts else reason


def _failure_reason(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, ResolveError):
        return str(error)
    if isinstance(error, defer.TimeoutError):
        return "timed out"
    text = failure.getErrorMessage()
    return text if text and text != type(error).__name__ else type(error).__name__
