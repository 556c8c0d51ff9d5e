# mypy: disable-error-code="no-untyped-call"
"""Fuzz targets: arbitrary bytes through the real SIP code, with the properties it must keep.

Each target takes one input (``bytes``) and returns normally when every
property held; a broken property raises `FuzzPropertyError` and an
unexpected exception escapes as it is, so that atheris (`tests.fuzzer`),
the Hypothesis tests and the replay of saved inputs (``tests/data/fuzz/``)
all report the real traceback. The properties:

``parse``
    `parse` raises nothing but `SipParseError`; the lazy accessors, the
    checks (``validate``, ``error_response``), `make_response`,
    `apply_received`, `stateless_branch` and `route_response` raise nothing
    but `SipParseError`
    either; serializing a parsed message is a fixed point after one round.
``values``
    One header value through `parse_via`, `check_address`, `split_values`,
    `parse_cseq` and `parse_number`: nothing but `SipParseError`, a parsed
    Via reads back the same (slow inputs show here first: see
    ``input_timeout`` of `tests.fuzzer.run_atheris`).
``framer``
    `StreamFramer.feed` raises nothing but `SipFramingError`; any cutting of
    the stream gives the same messages and the same error as one feed; the
    buffer never holds more than the configured sizes allow.
``datagram``
    A datagram through the real `SipDatagramProtocol` and `Dispatcher`
    (with the default `Responder`) is answered with one parseable response
    or dropped; nothing is logged as a failure; the socket answers a valid
    OPTIONS right after.
``options``
    The OPTIONS shortcut of UDP sockets (`answer_options`) answers with the
    very bytes the general path (`Dispatcher` and `Responder`) sends, or
    declines.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Final, ParamSpec, TypeVar

from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import provider

from sipsock.apps import Dispatcher, Responder
from sipsock.seams import Origin
from sipsock.sip import (
    Request,
    Response,
    SipFramingError,
    SipParseError,
    StreamFramer,
    apply_received,
    make_response,
    parse,
    parse_via,
    route_response,
    stateless_branch,
)
from sipsock.sip.checks import check_address, parse_cseq
from sipsock.sip.grammar import parse_number, split_values
from sipsock.sip.options_answer import OptionsReply
from sipsock.sip.parser import DEFAULT_MAX_SIZE
from sipsock.sockdef import parse_row
from sipsock.transport.udp import UdpListener

T = TypeVar("T")
P = ParamSpec("P")

#: Status codes a request may be answered with by the dispatcher and `Responder`
#: (513: a stream message whose Content-Length is above the size limit).
ANSWER_CODES: Final = frozenset({200, 400, 416, 420, 501, 505, 513})
#: Limits of the framer under test: small, so that inputs of a few KB reach them.
FRAMER_MAX_MESSAGE: Final = 2048
FRAMER_MAX_HEADER: Final = 512
#: The socket fuzzed datagrams arrive on, and their source address.
SOCKET: Final = parse_row(1, "udp:127.0.0.1:5060")
PEER: Final = ("192.0.2.7", 5070)

VALID_OPTIONS: Final = (
    b"OPTIONS sip:svc@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-fuzz;rport\r\n"
    b"From: <sip:fuzz@example.com>;tag=f1\r\n"
    b"To: <sip:svc@127.0.0.1>\r\n"
    b"Call-ID: still-serving@example.com\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class FuzzPropertyError(AssertionError):
    """A property of a fuzz target broke; the message says which and on what."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise FuzzPropertyError(what)


# -- parse ---------------------------------------------------------------------------


def fuzz_parse(data: bytes) -> None:
    """Parse ``data`` as a datagram and as a framed stream message, then use the result."""
    for datagram in (True, False):
        try:
            message = parse(data, datagram=datagram)
        except SipParseError as exc:
            _expect(exc.status in (None, 400), f"parse error with status {exc.status}")
            continue
        exercise_message(message)


def exercise_message(message: Request | Response) -> None:
    """Every reading and rewriting of a parsed message a transport or app does."""
    wire = bytes(message)
    again = parse(wire, max_size=max(len(wire), DEFAULT_MAX_SIZE))
    _expect(again.start_line() == message.start_line(), "start line changed by a round trip")
    _expect(again.body == message.body, "body changed by a round trip")
    _expect(bytes(again) == wire, "serialization is not a fixed point")
    for name in ("via", "contact", "route", "record-route", "to", "from", "supported"):
        for value in message.get_all(name):
            split_values(value)
            _swallow(check_address, value)
    _swallow(lambda: message.max_forwards)
    _swallow(lambda: message.content_length)
    _swallow(lambda: message.cseq)
    _swallow(lambda: message.call_id)
    via = _swallow(lambda: message.top_via)
    if via is not None:
        _expect(parse_via(str(via)) == via, f"Via {str(via)!r} does not parse back")
        _expect(via.rport is None or isinstance(via.rport, (bool, int)), "rport type")
        route = route_response(via)
        _expect(0 < route.port <= 65535, f"route port {route.port}")
    if isinstance(message, Response):
        _swallow(message.validate)
        return
    error = message.error_response
    _expect(error is None or error[0] in ANSWER_CODES, f"error response {error}")
    if via is None or _swallow(lambda: message.cseq) is None or not message.get("call-id"):
        return
    _swallow(apply_received, message, "2001:db8::7", 5070)
    branch = _swallow(stateless_branch, message, "salt")
    _expect(branch is None or branch.startswith("z9hG4bK"), f"stateless branch {branch!r}")
    response = make_response(message, error[0] if error else 200, "Fuzzed")
    response_wire = bytes(response)
    parsed = parse(response_wire, max_size=len(response_wire))
    _expect(isinstance(parsed, Response), "a response does not parse as a response")
    assert isinstance(parsed, Response)
    top = _swallow(lambda: parsed.top_via)
    if top is not None:
        route = route_response(parsed, connection_open=False)
        _expect(0 < route.port <= 65535, f"response route port {route.port}")


def _swallow(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """``call(*args)``, or None when it raised `SipParseError` (the one allowed exception)."""
    try:
        return call(*args, **kwargs)
    except SipParseError:
        return None


# -- header values -------------------------------------------------------------------


def fuzz_values(data: bytes) -> None:
    """``data`` as one header value (decoded as the parser does) through every value reader."""
    value = data.decode("utf-8", "surrogateescape")
    via = _swallow(parse_via, value)
    if via is not None:
        _expect(parse_via(str(via)) == via, f"Via {str(via)!r} does not parse back")
    _swallow(check_address, value)
    items = split_values(value)
    _expect(bool(items), "split_values gave no value")
    for item in items:
        _swallow(check_address, item)
    _swallow(parse_cseq, value)
    number = parse_number(value)
    _expect(number is None or number >= 0, f"number {number}")


# -- framer --------------------------------------------------------------------------


def cut(stream: bytes, sizes: bytes) -> list[bytes]:
    """``stream`` cut in chunks whose sizes come from ``sizes`` (each byte a size, 0 means 1)."""
    chunks: list[bytes] = []
    position = 0
    for size in sizes:
        if position >= len(stream):
            break
        step = size or 1
        chunks.append(stream[position : position + step])
        position += step
    if position < len(stream):
        chunks.append(stream[position:])
    return chunks


def new_framer() -> StreamFramer:
    """The framer under test, with limits small enough for fuzzed inputs to reach."""
    return StreamFramer(max_message_size=FRAMER_MAX_MESSAGE, max_header_size=FRAMER_MAX_HEADER)


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], int | None, int]:
    """Feed ``chunks`` in order to a new framer.

    Returns the messages, the index of the chunk that raised `SipFramingError`
    (None when none did) and the bytes still pending. Checks the buffer bound
    after every feed.
    """
    framer = new_framer()
    bound = max(FRAMER_MAX_MESSAGE, FRAMER_MAX_HEADER)
    messages: list[bytes] = []
    for index, chunk in enumerate(chunks):
        try:
            messages.extend(framer.feed(chunk))
        except SipFramingError:
            return messages, index, framer.pending
        _expect(framer.pending <= bound, f"framer holds {framer.pending} bytes, above {bound}")
    return messages, None, framer.pending


def fuzz_framer(data: bytes) -> None:
    """Feed a stream whole and in chunks: same messages, same error, bounded buffer.

    The first byte says how many of the next bytes are chunk sizes; the rest
    is the stream.
    """
    if not data:
        return
    count = data[0] % 32
    sizes, stream = data[1 : 1 + count], data[1 + count :]
    check_chunking(stream, cut(stream, sizes))


def check_chunking(stream: bytes, chunks: list[bytes]) -> None:
    """The framing properties for one stream cut into ``chunks``."""
    whole, whole_error, whole_pending = feed_all([stream])
    pieces, error_at, pending = feed_all(chunks)
    _expect(
        (whole_error is None) == (error_at is None),
        f"one feed {'failed' if whole_error is not None else 'passed'}, chunks "
        f"{'failed' if error_at is not None else 'passed'}",
    )
    if error_at is None:
        _expect(pieces == whole, "chunks gave other messages than one feed")
        _expect(pending == whole_pending, "chunks left other bytes pending than one feed")
    else:
        before = b"".join(chunks[:error_at])
        prefix, prefix_error, _ = feed_all([before])
        _expect(prefix_error is None, "the bytes before the failing chunk fail in one feed")
        _expect(pieces == prefix, "messages before the error differ from one feed")
    for message in pieces:
        _expect(len(message) <= FRAMER_MAX_MESSAGE, f"message of {len(message)} bytes framed")
        if message == b"\r\n\r\n":
            continue
        try:
            parsed = parse(message, datagram=False, max_size=FRAMER_MAX_MESSAGE)
        except SipParseError:
            continue
        exercise_message(parsed)


# -- datagram dispatch -----------------------------------------------------------------


class DatagramSocket:
    """A UDP socket with the real protocol, dispatcher and responder, on a fake transport."""

    def __init__(self) -> None:
        self.failures: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if "log_failure" in event:
                self.failures.append(event)

        self.dispatcher = Dispatcher(Responder())
        self.dispatcher.log = Logger(observer=observe)
        self.listener = UdpListener(SOCKET, 1, self.dispatcher, reactor=None)
        self.listener.limit_reporter.log = Logger(observer=observe)
        self.listener.log = Logger(observer=observe)
        self.transport = FakeDatagramTransport()
        self.listener.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> list[bytes]:
        """Deliver one datagram; return the datagrams written back to its sender."""
        self.transport.written.clear()
        self.listener.protocol.datagramReceived(data, PEER)
        if self.failures:
            failure = self.failures.pop()["log_failure"]
            self.failures.clear()
            failure.raiseException()
        _expect(self.dispatcher.app_errors == 0, "the application raised")
        replies = []
        for reply, address in self.transport.written:
            _expect(address == PEER, f"reply sent to {address}, not the sender")
            replies.append(reply)
        return replies


@functools.cache
def datagram_socket() -> DatagramSocket:
    """The one socket the datagram target uses (built on first use)."""
    return DatagramSocket()


def fuzz_datagram(data: bytes) -> None:
    """One datagram: answered once with a parseable response, or dropped; then still serving."""
    sock = datagram_socket()
    replies = sock.send(data)
    _expect(len(replies) <= 1, f"{len(replies)} replies to one datagram")
    for reply in replies:
        response = parse(reply)
        _expect(isinstance(response, Response), "a reply that is not a response")
        assert isinstance(response, Response)
        _expect(response.code in ANSWER_CODES, f"answered {response.code}")
    [answer] = sock.send(VALID_OPTIONS)
    _expect(answer.startswith(b"SIP/2.0 200 "), "a valid OPTIONS is not answered 200 any more")


# -- the OPTIONS shortcut ----------------------------------------------------------------


@functools.cache
def options_answerer() -> tuple[Dispatcher, OptionsReply]:
    """A dispatcher with the default `Responder`, and its fixed OPTIONS reply for `SOCKET`."""
    dispatcher = Dispatcher(Responder())
    reply = dispatcher.options_reply(SOCKET)
    assert reply is not None, "the Responder gives no OPTIONS reply"
    return dispatcher, reply


def fuzz_options(data: bytes) -> None:
    """The dispatcher's OPTIONS shortcut sends the very bytes the general path sends, or declines.

    Twice: a message answered by reading its lines is answered the second
    time from the layout it left (`sipsock.sip.options_layout`), which
    also serves the fuzzer's later variants of it.
    """
    dispatcher, _ = options_answerer()
    answers = [dispatcher.answer_datagram(data, PEER, SOCKET) for _ in range(2)]
    if answers == [None, None]:
        return
    sent: list[bytes] = []
    dispatcher.message_received(data, Origin(sdef=SOCKET, slot=1, peer=PEER, reply=sent.append))
    for answer in answers:
        _expect(sent == [answer], f"the shortcut answered {answer!r}, the general path {sent!r}")


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "parse": fuzz_parse,
    "values": fuzz_values,
    "framer": fuzz_framer,
    "datagram": fuzz_datagram,
    "options": fuzz_options,
}


def planted_crash(data: bytes) -> None:
    """A target with a known bug: shows that the harness reports a crash (never run by default)."""
    if data[:4] == b"FUZZ":
        raise ValueError("the planted bug")


#: Targets the fuzzer knows but does not run unless named.
SELF_TESTS: Final[dict[str, Callable[[bytes], None]]] = {"planted-crash": planted_crash}


def replay(inputs: Iterator[bytes]) -> None:
    """Run every target on every input (a saved corpus, a crash file)."""
    for data in inputs:
        for target in TARGETS.values():
            target(data)
