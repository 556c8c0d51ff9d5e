"""The HTTP MI's access log: one debug line per request, with structured fields.

twisted.web writes a combined-log line at info for every request; a
Prometheus scrape every 15 s and a monitoring MI poll would fill the log.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web import server


class QuietSite(server.Site):
    """A `Site` whose access line is a debug event (``method``, ``path``, ``status``,
    ``peer``, ``bytes``)."""

    access_log = Logger(namespace="sipsock.mi.access")

    def log(self, request: Any) -> None:
        client = request.getClientAddress()
        peer = getattr(client, "host", None)
        self.access_log.debug(
            "{method} {path} {status} {bytes} bytes from {peer}",
            method=_text(request.method),
            path=_text(request.uri),
            status=request.code,
            bytes=request.sentLength,
            peer=peer,
        )


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or "-"
