"""JSON-RPC over HTTP: ``POST /mi``, as OpenSIPS's mi_http serves it.

Non-POST: 405; empty body: 400; body larger than the bound: 413; a
notification: 202 with no body; every JSON-RPC answer, errors included: 200.
"""

from __future__ import annotations

from typing import Any

from twisted.application import internet
from twisted.application.service import IService
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, resource, server

from sipsock.mi.access import QuietSite
from sipsock.mi.commands import CommandTable, answer_jsonrpc
from sipsock.mi.jsonrpc import MAX_REQUEST_BYTES
from sipsock.mi.metrics import METRICS_PATH, MetricsProducer, MetricsResource

DEFAULT_INTERFACE = "127.0.0.1"
DEFAULT_PORT = 8888
MI_PATH = b"mi"


class MIResource(resource.Resource):
    """The ``/mi`` resource: one JSON-RPC request per POST."""

    isLeaf = True
    log = Logger()

    def __init__(self, table: CommandTable) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._table = table

    def render(self, request: Any) -> bytes | int:
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"POST")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed: use POST\n"
        if getattr(request, "too_large", False):
            request.setResponseCode(413)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Request Entity Too Large\n"
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
                request.setResponseCode(500)
                request.finish()

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


class _Root(resource.Resource):
    """Holds ``/mi``; every other path is 404."""

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        return pages.notFound()


def build_site(
    table: CommandTable,
    *,
    max_body: int = MAX_REQUEST_BYTES,
    metrics: MetricsProducer | None = None,
) -> server.Site:
    """The HTTP site: ``/mi`` answers JSON-RPC, ``/metrics`` (with ``metrics``) the
    Prometheus text, every other path 404."""
    root = _Root()  # type: ignore[no-untyped-call]
    root.putChild(MI_PATH, MIResource(table))
    if metrics is not None:
        root.putChild(METRICS_PATH, MetricsResource(metrics))
    request_class = type("MIRequest", (_BoundedRequest,), {"max_body": max_body})
    site = QuietSite(root, requestFactory=request_class)  # type: ignore[no-untyped-call]
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
) -> IListeningPort:
    """Listen for ``POST /mi`` (and ``GET /metrics``) now; raises CannotListenError on a bind
    error."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    assert reactor is not None
    site: Any = build_site(table, max_body=max_body, metrics=metrics)
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
