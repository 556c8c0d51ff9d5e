# mypy: disable-error-code="no-untyped-call"
"""Which applications let sipsock answer OPTIONS for them (`IAnswersOptions`)."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from sipsock.apps import Dispatcher, IAnswersOptions, MessageContext, Responder, StatelessProxy
from sipsock.sip import Request, Response
from sipsock.sip.response import stable_tag
from sipsock.sockdef import parse_row

UDP = parse_row(1, "udp:10.0.0.1:5060")
TCP = parse_row(2, "tcp:10.0.0.1:5060")


def test_responder_provides_the_options_shortcut_for_udp_sockets() -> None:
    responder = Responder(server="probe/1")
    assert verifyObject(IAnswersOptions, responder)
    reply = Dispatcher(responder).options_reply(UDP)
    assert reply is not None
    assert reply.tail.startswith("Contact: <sip:10.0.0.1:5060>\r\nAllow: OPTIONS\r\n")
    assert reply.tail.endswith("Server: probe/1\r\nContent-Length: 0\r\n\r\n")


def test_stream_sockets_never_take_the_shortcut() -> None:
    assert Dispatcher(Responder()).options_reply(TCP) is None


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
