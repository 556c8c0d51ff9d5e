"""`Responder`: the default application, a stateless answering machine.

OPTIONS (the keep-alive of most SIP peers) gets 200 OK with Allow, Accept,
Supported, Server and a Contact on the receiving socket's public address;
ACK and responses are absorbed; every other request gets the configured
status (501 Not Implemented by default). A request whose Require names an
extension not in ``supported`` gets 420 Bad Extension with an Unsupported
header (RFC 3261 8.2.2.3): never ACK nor CANCEL, and, as the method is
inspected first (8.2.1), not a request whose method the configured status
refuses (405, 501).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import partial

from twisted.logger import Logger
from zope.interface import implementer

from sipsock import __version__
from sipsock.apps.interface import IAnswersOptions, ISipApplication, MessageContext
from sipsock.sip import Request, Response, SipParseError
from sipsock.sip.extensions import required_but_unsupported
from sipsock.sip.options_answer import OptionsReply, tail_of
from sipsock.sip.response import response_bytes, salted_hash, stable_tag_from
from sipsock.sockdef import SocketDef

DEFAULT_SERVER = f"sipsock/{__version__}"
#: Statuses that refuse the method itself (RFC 3261 8.2.1), before any Require is read.
METHOD_REFUSALS = frozenset({405, 501})


def contact_uri(sdef: SocketDef) -> str:
    """``<sip:public-host:public-port;transport=...>`` of a socket (no transport for UDP)."""
    transport = "" if sdef.proto == "udp" else f";transport={sdef.proto}"
    return f"<sip:{sdef.public_host}:{sdef.public_port}{transport}>"


@implementer(ISipApplication, IAnswersOptions)
class Responder:
    """Answers OPTIONS with 200, every other request with ``status reason``.

    ``allow`` and ``supported`` fill the Allow and Supported headers of the
    200; ``server`` the Server header of every response. The To tag is a hash
    of Call-ID and From, so retransmissions get the same tag.

    Its 200 to OPTIONS is fixed apart from the copied headers, so it lets
    sipsock answer well-formed OPTIONS over UDP without calling it
    (`options_reply`); a subclass that answers OPTIONS another way (its own
    ``message_received``, ``to_tag`` or ``options_headers``) is called for
    every OPTIONS unless it overrides `options_reply` too.
    """

    log = Logger()

    def __init__(
        self,
        status: int = 501,
        reason: str = "Not Implemented",
        server: str = DEFAULT_SERVER,
        allow: Sequence[str] = ("OPTIONS",),
        supported: Sequence[str] = (),
    ) -> None:
        if not isinstance(status, int) or not 300 <= status <= 699:
            raise ValueError(f"status {status!r} must be a final error status (300-699)")
        if not reason or any(not ch.isprintable() for ch in reason):
            raise ValueError(f"reason {reason!r} must be printable text")
        self.status = status
        self.reason = reason
        self.server = server
        self.allow = ", ".join(allow)
        self.supported = ", ".join(supported)
        self._supported_tags = tuple(supported)
        self._salt = secrets.token_hex(8)
        self._salted = salted_hash(self._salt)

    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        """Answer a request (absorb ACK and responses)."""
        if isinstance(message, Response) or message.method == "ACK":
            return

        tag = partial(self.to_tag, message)  # asked for only when the To has no tag

        method_refused = message.method != "OPTIONS" and self.status in METHOD_REFUSALS
        try:
            unsupported = (
                [] if method_refused else required_but_unsupported(message, self._supported_tags)
            )
        except SipParseError as exc:
            phrase = f"Bad Request ({exc.reason})"
            context.origin.reply(response_bytes(message, 400, phrase, to_tag=tag))
            return
        if unsupported:
            headers = [("Unsupported", ", ".join(unsupported)), ("Server", self.server)]
            answer = response_bytes(message, 420, "Bad Extension", to_tag=tag, headers=headers)
        elif message.method == "OPTIONS":
            headers = self.options_headers(context.socket)
            answer = response_bytes(message, 200, "OK", to_tag=tag, headers=headers)
        else:
            headers = [("Server", self.server)]
            if self.status == 405:
                headers.insert(0, ("Allow", self.allow))
            answer = response_bytes(message, self.status, self.reason, to_tag=tag, headers=headers)
        # The bytes of ``context.reply(make_response(...))``, without the Response.
        context.origin.reply(answer)

    def to_tag(self, request: Request) -> str:
        """A To tag stable across retransmissions of one request."""
        # `stable_tag(self._salt, ...)`, without hashing the salt each time.
        return stable_tag_from(self._salted, request.call_id, request.get("from"))

    def options_headers(self, sdef: SocketDef) -> list[tuple[str, str]]:
        """The headers the 200 to an OPTIONS received on ``sdef`` adds to the copied ones."""
        return [
            ("Contact", contact_uri(sdef)),
            ("Allow", self.allow),
            ("Accept", "application/sdp"),
            ("Supported", self.supported),
            ("Server", self.server),
        ]

    def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
        """The fixed part of the 200 to OPTIONS on ``sdef`` (see `IAnswersOptions`).

        None for a subclass that changed how OPTIONS is answered without
        overriding this method.
        """
        cls = type(self)
        if (
            cls.message_received is not Responder.message_received
            or cls.to_tag is not Responder.to_tag
            or cls.options_headers is not Responder.options_headers
        ):
            return None
        return OptionsReply(tail_of(self.options_headers(sdef)), self._salt)
