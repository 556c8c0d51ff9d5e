"""The seam between sipsock and the code that decides what to do with SIP messages.

An application provides `ISipApplication`: it is called once per received,
parsed and well-formed message with a `MessageContext` that names the
receiving socket and the peer and lets it answer (`MessageContext.reply`) or
send elsewhere (`MessageContext.send`, from any open socket chosen by tag or
slot). It never sees a transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import Interface

from sipsock.sip import Message, Request, Response
from sipsock.sip.options_answer import OptionsReply
from sipsock.sockdef import SocketDef

if TYPE_CHECKING:
    from sipsock.seams import Listener, Origin


class ApplicationError(Exception):
    """An application that cannot be loaded, or a send it asked for that cannot be done.

    ``subject`` names what went wrong (the dotted path, the socket asked for),
    ``reason`` says why; ``str(error) == f"{subject}: {reason}"``.
    """

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class ISipApplication(Interface):
    """What sipsock calls for every SIP message it receives.

    Implementations must not block: anything slow returns at once and
    finishes later (Deferreds). An exception is logged and counted as a drop;
    it never closes the socket.
    """

    def message_received(message: Request | Response, context: MessageContext) -> None:  # noqa: N805
        """Handle one parsed message received on ``context.socket`` from ``context.peer``."""


class IAnswersOptions(Interface):
    """An application whose 200 to a well-formed OPTIONS is fixed apart from the copied headers.

    sipsock then answers such OPTIONS received over UDP itself, straight from
    the bytes (`sipsock.sip.options_answer.answer_options`), without parsing them
    into a `Request` or calling ``message_received``. The promise: for every
    well-formed OPTIONS, ``message_received`` would reply exactly
    ``make_response(request, 200, "OK", to_tag=stable_tag(salt, Call-ID,
    From), headers=...)`` with the Via stamped by ``apply_received``, where
    the headers and salt are those of ``options_reply(socket)``. Anything
    else (another method, a malformed request) still reaches the
    application.
    """

    def options_reply(socket: SocketDef) -> OptionsReply | None:  # noqa: N805
        """The fixed part of the 200 to OPTIONS on ``socket``, or None to see every OPTIONS."""


class SocketDirectory(Protocol):
    """The open sockets, by tag and by slot (the registry; a worker's directory).

    When several sockets match, every process gives the same one: the first
    in the order of `sipsock.socketindex` (static sockets in ``listen``
    order, then dynamic ones in table order).
    """

    def by_tag(self, tag: str) -> Listener | None:
        """The first open socket with this tag, or None."""

    def by_slot(self, slot: int) -> Listener | None:
        """The open socket in this slot, or None."""

    def first(self, proto: str) -> Listener | None:
        """The first open socket of this protocol, or None."""


class NoSockets:
    """A `SocketDirectory` with no sockets (tests, or an application with one socket)."""

    def by_tag(self, tag: str) -> Listener | None:
        """Always None."""
        return None

    def by_slot(self, slot: int) -> Listener | None:
        """Always None."""
        return None

    def first(self, proto: str) -> Listener | None:
        """Always None."""
        return None


# Not frozen, with slots: built once per message (see `sipsock.seams.Origin`).
@dataclass(slots=True, unsafe_hash=True)
class MessageContext:
    """Where a message came from, and the ways to answer it (read-only).

    ``socket`` is the receiving socket's definition as it was when the message
    arrived (slot, proto, host, port, advertised, tag, flags, tos), ``slot``
    its slot (None for a static socket), ``peer`` the sender's (host, port).
    """

    origin: Origin
    directory: SocketDirectory

    @property
    def socket(self) -> SocketDef:
        """The receiving socket."""
        return self.origin.sdef

    @property
    def slot(self) -> int | None:
        """The receiving socket's slot (None for a static socket)."""
        return self.origin.slot

    @property
    def peer(self) -> tuple[str, int]:
        """The sender's address (host, port)."""
        return self.origin.peer

    @property
    def connection_id(self) -> int | None:
        """The stream connection the message came on (None for UDP)."""
        return self.origin.connection_id

    def reply(self, message: Message) -> None:
        """Send ``message`` back the way the received one came.

        UDP: to the source address from the receiving socket; stream: on the
        same connection (dropped and counted when it has closed since).
        """
        self.origin.reply(message.serialize())

    def send(
        self,
        message: Message,
        destination: tuple[str, int],
        via_socket: str | int | Listener | None = None,
    ) -> Deferred[None]:
        """Send ``message`` to ``destination`` (host, port) from a socket.

        The host is an IP address; a TLS or WSS socket also takes a host name,
        which it connects to and checks the server's certificate against.

        ``via_socket`` is a tag (str) or a slot (int) of an open socket, or a
        listener found earlier (`find_socket`, ``directory.first``); None
        means the receiving socket. Every transport works the same way: a
        stream socket reuses its connection to ``destination`` or opens one
        from its own address. Fails with `ApplicationError` when no such
        socket is open, or with the transport's error (connection refused,
        connect timeout, outbound connection limit, socket closed).
        """
        if via_socket is None or isinstance(via_socket, (str, int)):
            listener = self.find_socket(via_socket)
        else:
            listener = via_socket
        if listener is None:
            return defer.fail(
                ApplicationError(f"via_socket {via_socket!r}", "no such socket is open")
            )
        return listener.send(bytes(message), destination)

    def find_socket(self, via_socket: str | int | None) -> Listener | None:
        """The listener for a tag, a slot or None (the receiving socket)."""
        if via_socket is None:
            if self.origin.listener is not None:
                return self.origin.listener
            if self.origin.slot is not None:
                return self.directory.by_slot(self.origin.slot)
            return None
        if isinstance(via_socket, str):
            return self.directory.by_tag(via_socket)
        return self.directory.by_slot(via_socket)
