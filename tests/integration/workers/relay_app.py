"""A test SIP application: answers like the Responder and relays each request elsewhere.

Named in ``[core] application`` as ``tests.integration.workers.relay_app:StreamRelay``
with ``[application] via = "<tag>"``, ``host``, ``port``: every request other
than ACK is answered (OPTIONS gets 200) and its bytes are also sent to
``host:port`` through the socket tagged ``via``. In a UDP worker that socket
lives in the control process (TCP), so the send goes through ``SendThroughSocket``.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.apps import ISipApplication, MessageContext, Responder
from sipsock.sip import Request, Response


@implementer(ISipApplication)
class StreamRelay:
    """Responder that also relays each request through the socket tagged ``via``."""

    log = Logger()

    def __init__(self, via: str = "relay", host: str = "127.0.0.1", port: int = 5060) -> None:
        self.via = via
        self.destination = (host, port)
        self.responder = Responder()

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        self.responder.message_received(message, context)
        if not isinstance(message, Request) or message.method == "ACK":
            return
        sending = context.send(message, self.destination, via_socket=self.via)
        sending.addErrback(self._failed, message)

    def _failed(self, failure: Failure, message: Request) -> None:
        self.log.warn(
            "relay of {method} through {via} failed: {reason}",
            method=message.method,
            via=self.via,
            reason=failure.getErrorMessage(),
        )
