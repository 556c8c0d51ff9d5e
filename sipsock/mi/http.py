"""JSON-RPC over HTTP: ``POST /mi``, as OpenSIPS's mi_http serves it.

A request whose ``Host`` or ``Origin`` is not this listener's: 403, on every
path (`sipsock.mi.httpguard`: browsers and DNS rebinding are kept out); a
POST without ``Content-Type: application/json``: 415. At most
`MAX_CONNECTIONS` connections are open at once (more are closed when
accepted) and an idle one is closed after `IDLE_TIMEOUT` seconds. Refusals
are logged folded (the first of each rule, then one count per minute).
Non-POST: 405; empty body: 400; body larger than the bound: 413 (with a
JSON-RPC parse error as the body); a notification: 202 with no body; every
JSON-RPC answer, errors included: 200.
"""

from __future__ import annotations

from typing import Any

from twisted.application import internet
from twisted.application.service import IService
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource, server

from sipsock.limits import Summary
from sipsock.mi import jsonrpc
from sipsock.mi.access import QuietSite
from sipsock.mi.commands import CommandTable, answer_jsonrpc, internal_error
from sipsock.mi.httpguard import Refusal, content_type_refusal, request_refusal
from sipsock.mi.jsonrpc import MAX_REQUEST_BYTES
from sipsock.mi.metrics import METRICS_PATH, MetricsProducer, MetricsResource
from sipsock.transport.base import PeriodicLog

DEFAULT_INTERFACE = "127.0.0.1"
DEFAULT_PORT = 8888
MI_PATH = b"mi"
#: Seconds between two log lines about refused requests of one rule.
REFUSAL_LOG_INTERVAL = 60.0
#: Connections open at once; more are closed as soon as they are accepted.
MAX_CONNECTIONS = 64
#: Seconds a connection may stay idle between requests (none while one runs).
IDLE_TIMEOUT = 60.0


class MIResource(resource.Resource):
    """The ``/mi`` resource: one JSON-RPC request per POST."""

    isLeaf = True
    log = Logger()

    def __init__(self, table: CommandTable, refusals: RefusalLog | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._table = table
        self._refusals = refusals if refusals is not None else RefusalLog()

    def render(self, request: Any) -> bytes | int:
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"POST")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed: use POST\n"
        refusal = content_type_refusal(_header(request, b"content-type"))
        if refusal is not None:
            return self._refusals.refuse(request, refusal)
        if getattr(request, "too_large", False):
            request.setResponseCode(413)
            request.setHeader(b"Content-Type", b"application/json")
            return jsonrpc.encode_error(
                None,
                jsonrpc.PARSE_ERROR,
                jsonrpc.MESSAGES[jsonrpc.PARSE_ERROR],
                f"request larger than {request.max_body} bytes",
            )
        assert request.content is not None
        request.content.seek(0)
        body = request.content.read()
        if not body.strip():
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Bad Request: empty body\n"
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def respond(reply: bytes | None) -> None:
            if finished[0]:
                return
            if reply is None:
                request.setResponseCode(202)
            else:
                request.setResponseCode(200)
                request.setHeader(b"Content-Type", b"application/json")
                request.write(reply)
            request.finish()

        def crashed(failure: Failure) -> None:
            self.log.failure("MI HTTP request failed", failure)
            if not finished[0]:
                respond(internal_error("the request could not be answered"))

        answer_jsonrpc(self._table, body).addCallback(respond).addErrback(crashed)
        return server.NOT_DONE_YET


class _BoundedRequest(server.Request):
    """A request that stops storing its body past ``max_body`` bytes.

    A body announced (Content-Length) or found larger than the bound is not
    kept; the resource then answers 413.
    """

    max_body = MAX_REQUEST_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.too_large = False
        self._received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self.too_large = True
            length = 0
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.max_body:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call]


def _header(request: Any, name: bytes) -> str | None:
    value: bytes | None = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class _Refused(resource.Resource):
    """The answer to a refused request: its status and reason, as plain text."""

    isLeaf = True

    def __init__(self, refusal: Refusal, refusals: RefusalLog) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.refusal = refusal
        self.refusals = refusals

    def render(self, request: Any) -> bytes:
        return self.refusals.refuse(request, self.refusal)


class RefusalLog:
    """Answers refused requests, and logs them folded: the first of each rule,
    then a count per period (on ``clock``, the global reactor by default)."""

    log = Logger()

    def __init__(self, clock: Any = None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._periods = PeriodicLog(clock, REFUSAL_LOG_INTERVAL, self._summarize)

    def refuse(self, request: Any, refusal: Refusal) -> bytes:
        """Log the refusal (folded) and answer it: its status and reason as text."""
        self._note(refusal, request)
        request.setResponseCode(refusal.status)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return f"{refusal.reason}\n".encode()

    def connection_refused(self, addr: Any, limit: int) -> None:
        """A connection over the cap was closed at accept: log it (folded)."""
        if not self._periods.hit("connections"):
            return
        self.log.warn(
            "MI HTTP connection from {peer} refused: {limit} connections open "
            "(repeats are summed up every {interval:g} s)",
            peer=f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}",
            limit=limit,
            interval=REFUSAL_LOG_INTERVAL,
        )

    def _note(self, refusal: Refusal, request: Any) -> None:
        if not self._periods.hit(refusal.rule):
            return
        peer = request.getClientAddress()
        self.log.warn(
            "MI HTTP request from {peer} refused ({status}): {reason} "
            "(repeats are summed up every {interval:g} s)",
            peer=f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}",
            status=refusal.status,
            reason=refusal.reason,
            interval=REFUSAL_LOG_INTERVAL,
        )

    def _summarize(self, summary: Summary) -> None:
        self.log.warn(
            "MI HTTP: {count} more requests refused by the {rule} rule in the last {seconds:.3g} s",
            count=summary.suppressed,
            rule=summary.key,
            seconds=summary.seconds,
        )


class _MISite(QuietSite):
    """The MI site: at most ``max_connections`` open (more are closed at accept,
    before any HTTP work), idle ones closed after ``timeout`` seconds."""

    def __init__(
        self, root: resource.Resource, refusals: RefusalLog, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(root, **kwargs)  # type: ignore[no-untyped-call]
        self.refusals = refusals
        self.max_connections = max_connections
        self.channels: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.channels) >= self.max_connections:
            self.refusals.connection_refused(addr, self.max_connections)
            return None
        channel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if channel is not None:
            self.channels.add(channel)
            lost = channel.connectionLost

            def connection_lost(reason: Failure) -> None:
                self.channels.discard(channel)
                lost(reason)

            channel.connectionLost = connection_lost
        return channel


class _Root(resource.Resource):
    """Holds ``/mi`` (and ``/metrics``); every other path is 404; a foreign request 403."""

    def __init__(self, refusals: RefusalLog) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.refusals = refusals

    def getChildWithDefault(self, path: bytes, request: Any) -> resource.IResource:
        local = request.getHost()
        refusal = request_refusal(
            host=_header(request, b"host"),
            origin=_header(request, b"origin"),
            fetch_site=_header(request, b"sec-fetch-site"),
            local_address=str(getattr(local, "host", "")),
            local_port=int(getattr(local, "port", 0)),
        )
        # Twisted's default names its version.
        request.setHeader(b"Server", b"sipsock")
        if refusal is not None:
            return _Refused(refusal, self.refusals)
        child: resource.IResource = super().getChildWithDefault(path, request)  # type: ignore[no-untyped-call]
        return child

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return pages.notFound()


def build_site(
    table: CommandTable,
    *,
    max_body: int = MAX_REQUEST_BYTES,
    metrics: MetricsProducer | None = None,
    clock: Any = None,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
) -> server.Site:
    """The HTTP site: ``/mi`` answers JSON-RPC, ``/metrics`` (with ``metrics``) the
    Prometheus text, every other path 404; foreign requests 403 (``clock`` times
    the folded refusal log lines)."""
    refusals = RefusalLog(clock)
    root = _Root(refusals)
    root.putChild(MI_PATH, MIResource(table, refusals))
    if metrics is not None:
        root.putChild(METRICS_PATH, MetricsResource(metrics))
    request_class = type("MIRequest", (_BoundedRequest,), {"max_body": max_body})
    # The body is JSON-RPC, read whole by MIResource: Twisted's form parsing (an
    # email.message Content-Type parse per request, a MIME parse of a multipart
    # body) would only cost time, and answer a bad form itself before our 415.
    site = _MISite(
        root,
        refusals,
        max_connections,
        requestFactory=request_class,
        timeout=idle_timeout,
        parsePOSTFormSubmission=False,
    )
    site.displayTracebacks = False
    return site


def listen_http(
    table: CommandTable,
    *,
    interface: str = DEFAULT_INTERFACE,
    port: int = DEFAULT_PORT,
    max_body: int = MAX_REQUEST_BYTES,
    reactor: IReactorTCP | None = None,
    metrics: MetricsProducer | None = None,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
) -> IListeningPort:
    """Listen for ``POST /mi`` (and ``GET /metrics``) now; raises CannotListenError on a bind
    error."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    assert reactor is not None
    site: Any = build_site(
        table,
        max_body=max_body,
        metrics=metrics,
        clock=reactor,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
    )
    return reactor.listenTCP(port, site, interface=interface)


def http_service(
    table: CommandTable,
    *,
    interface: str = DEFAULT_INTERFACE,
    port: int = DEFAULT_PORT,
    max_body: int = MAX_REQUEST_BYTES,
) -> IService:
    """A service listening for ``POST /mi`` while running (default 127.0.0.1:8888)."""
    service: IService = internet.TCPServer(  # type: ignore[no-untyped-call]
        port, build_site(table, max_body=max_body), interface=interface
    )
    return service
