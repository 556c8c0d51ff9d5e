# mypy: disable-error-code="no-untyped-call"
"""`open_listener` refuses what it cannot serve with a `ListenError` naming the socket."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from sipsock.seams import ListenError, MessageSink, Origin
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport.listener_factory import open_listener


class Sink(MessageSink):
    def message_received(self, data: bytes, origin: Origin) -> None:
        raise AssertionError("nothing is received here")


def test_an_unknown_protocol_is_a_listen_error() -> None:
    sdef = SocketDef("sctp", "127.0.0.1", 5060, text="sctp:127.0.0.1:5060")
    with pytest.raises(ListenError) as caught:
        open_listener(sdef, None, Sink(), reactor=MemoryReactorClock())
    assert caught.value.reason == "protocol sctp is not supported"


@pytest.mark.parametrize("text", ["tls:127.0.0.1:5061", "wss:127.0.0.1:443"])
def test_a_tls_socket_without_tls_domains_is_a_listen_error(text: str) -> None:
    with pytest.raises(ListenError) as caught:
        open_listener(parse_row(1, text), 1, Sink(), reactor=MemoryReactorClock())
    assert caught.value.sdef.socket_text == text
    assert "no TLS domain is configured" in caught.value.reason
