"""``GET /metrics`` on the HTTP MI listener: the Prometheus text of `sipsock.stats`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

METRICS_PATH: Final = b"metrics"
#: The Prometheus text exposition format, version 0.0.4.
CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"

MetricsProducer = Callable[[], Deferred[str]]


class MetricsResource(resource.Resource):
    """``/metrics``: GET (or HEAD) answers the Prometheus text; other methods 405."""

    isLeaf = True
    log = Logger()

    def __init__(self, produce: MetricsProducer) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._produce = produce

    def render(self, request: Any) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed: use GET\n"
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def respond(text: str) -> None:
            if finished[0]:
                return
            request.setResponseCode(200)
            request.setHeader(b"Content-Type", CONTENT_TYPE)
            request.write(text.encode("utf-8"))
            request.finish()

        def crashed(failure: Failure) -> None:
            self.log.failure("metrics request failed", failure)
            if not finished[0]:
                request.setResponseCode(500)
                request.finish()

        self._produce().addCallback(respond).addErrback(crashed)
        return server.NOT_DONE_YET
