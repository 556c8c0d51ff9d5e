# mypy: disable-error-code="no-untyped-call"
"""Which applications let sipsock answer OPTIONS for them (`IAnswersOptions`)."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from sipsock.apps import Dispatcher, IAnswersOptions, MessageContext, Responder, StatelessProxy
from sipsock.seams import Origin
from sipsock.sip import Request, Response
from sipsock.sip.options_answer import OptionsReply
from sipsock.sip.options_memo import BUDGET
from sipsock.sip.response import stable_tag
from sipsock.sockdef import SocketDef, parse_row

UDP = parse_row(1, "udp:10.0.0.1:5060")
TCP = parse_row(2, "tcp:10.0.0.1:5060")


def test_responder_provides_the_options_shortcut_for_udp_sockets() -> None:
    responder = Responder(server="probe/1")
    assert verifyObject(IAnswersOptions, responder)
    reply = Dispatcher(responder).options_reply(UDP)
    assert reply is not None
    assert reply.tail.startswith("Contact: <sip:10.0.0.1:5060>\r\nAllow: OPTIONS\r\n")
    assert reply.tail.endswith("Server: probe/1\r\nContent-Length: 0\r\n\r\n")


def test_stream_sockets_take_the_shortcut_too_with_their_own_contact() -> None:
    reply = Dispatcher(Responder()).options_reply(TCP)
    assert reply is not None
    assert reply.tail.startswith("Contact: <sip:10.0.0.1:5060;transport=tcp>\r\n")


def test_proxy_sees_every_options() -> None:
    assert not IAnswersOptions.providedBy(StatelessProxy.__new__(StatelessProxy))


class OwnOptions(Responder):
    def message_received(self, message: Request | Response, context: MessageContext) -> None:
        context.reply(Response(299, "Mine"))


class OwnTag(Responder):
    def to_tag(self, request: Request) -> str:
        return "fixed"


def test_a_subclass_that_answers_options_its_own_way_sees_every_options() -> None:
    assert Dispatcher(OwnOptions()).options_reply(UDP) is None
    assert Dispatcher(OwnTag()).options_reply(UDP) is None


def test_to_tag_is_the_stable_tag_of_call_id_and_from() -> None:
    responder = Responder()
    request = Request("OPTIONS", "sip:x", [("Call-ID", "c1"), ("From", "<sip:a@b>;tag=1")])
    reply = responder.options_reply(UDP)
    assert reply is not None
    assert responder.to_tag(request) == stable_tag(reply.salt, "c1", "<sip:a@b>;tag=1")


# --- the dispatcher answers OPTIONS from its own memo (`Dispatcher.answer_datagram`) ----

PEER = ("192.0.2.5", 5070)
OPTIONS = (
    b"OPTIONS sip:svc@10.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK-1;rport\r\n"
    b"From: <sip:probe@192.0.2.5>;tag=1\r\n"
    b"To: <sip:svc@10.0.0.1>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def general_answer(dispatcher: Dispatcher, data: bytes) -> list[bytes]:
    sent: list[bytes] = []
    dispatcher.message_received(data, Origin(UDP, 1, PEER, sent.append))
    return sent


def test_the_dispatcher_answers_a_plain_options_with_the_general_paths_bytes() -> None:
    dispatcher = Dispatcher(Responder())
    first = dispatcher.answer_datagram(OPTIONS, PEER, UDP)
    again = dispatcher.answer_datagram(OPTIONS.replace(b"-1;rport", b"-2;rport"), PEER, UDP)
    assert first is not None and again is not None
    assert general_answer(dispatcher, OPTIONS) == [first]
    assert b"branch=z9hG4bK-2;" in again


def test_the_dispatcher_declines_other_requests() -> None:
    dispatcher = Dispatcher(Responder())
    invite = OPTIONS.replace(b"OPTIONS sip", b"INVITE sip").replace(b"1 OPTIONS", b"1 INVITE")
    assert dispatcher.answer_datagram(invite, PEER, UDP) is None
    assert dispatcher.answer_datagram(b"\r\n\r\n", PEER, UDP) is None
    assert (
        Dispatcher(StatelessProxy.__new__(StatelessProxy)).answer_datagram(OPTIONS, PEER, UDP)
        is None
    )


def test_each_dispatcher_remembers_in_its_own_bounded_memo() -> None:
    one, other = Dispatcher(Responder()), Dispatcher(Responder())
    assert one.answer_datagram(OPTIONS, PEER, UDP) is not None
    assert len(one.options_memo) > 0
    assert 0 < one.options_memo.size <= BUDGET
    assert len(other.options_memo) == 0


class CountingReplies(Responder):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.fail = fail

    def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
        self.asked.append(sdef.socket_text if sdef.advertised_host is None else sdef.public_host)
        if self.fail:
            raise RuntimeError("application bug")
        return Responder.options_reply(self, sdef)


def test_the_reply_is_asked_once_per_socket_definition() -> None:
    app = CountingReplies()
    dispatcher = Dispatcher(app)
    advertised = parse_row(1, "udp:10.0.0.1:5060", "pub.example.com")
    for sdef in (UDP, UDP, advertised, UDP, advertised):
        assert dispatcher.answer_datagram(OPTIONS, PEER, sdef) is not None
    assert app.asked == ["udp:10.0.0.1:5060", "pub.example.com"]
    assert b"Contact: <sip:pub.example.com:5060>" in (
        dispatcher.answer_datagram(OPTIONS, PEER, advertised) or b""
    )
    # Every reload builds equal definitions anew: not asked again, and what
    # the dispatcher keeps per definition object stays bounded.
    for _ in range(100):
        again = parse_row(1, "udp:10.0.0.1:5060")
        assert dispatcher.answer_datagram(OPTIONS, PEER, again) is not None
    assert app.asked == ["udp:10.0.0.1:5060", "pub.example.com"]
    assert len(dispatcher._reply_of_id) <= 2


def test_a_failing_reply_is_asked_once_and_every_options_goes_to_the_application() -> None:
    app = CountingReplies(fail=True)
    dispatcher = Dispatcher(app)
    assert dispatcher.answer_datagram(OPTIONS, PEER, UDP) is None
    assert dispatcher.answer_datagram(OPTIONS, PEER, UDP) is None
    assert app.asked == ["udp:10.0.0.1:5060"]
    assert general_answer(dispatcher, OPTIONS)[0].startswith(b"SIP/2.0 200 OK\r\n")
