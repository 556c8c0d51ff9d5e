"""What the SIP code does with a corpus of inputs, written as text: compares two builds.

The compiled SIP core and proxy rules (mypyc) must do what the pure-Python
ones do, byte for byte and error for error: a compiled build differs where
Python's semantics and the C translation part (mypyc 2.4.1's ``bytes`` slice
raised `SystemError` where Python gives ``b""``). `behaviour` runs one input
through every reader and writer the fuzz targets use (`tests.fuzz_targets`),
and through the stateless proxy as a request and as a response, and
records each result, or the exception raised, as a line of text;
``test_compiled_matches_pure.py`` compares the records of this process
with those of a child process that imports a pure copy of ``sipsock``.

Run as ``python -m tests.build_behaviour SEED COUNT``: prints the build it
ran (`sipsock.buildinfo.sip_core`), then one JSON list of records per input.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import Final

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, Logger
from zope.interface import provider

from sipsock.apps import Dispatcher, StatelessProxy
from sipsock.buildinfo import sip_core
from sipsock.resolver import ResolveError
from sipsock.seams import Origin
from sipsock.sip import (
    Request,
    Response,
    Via,
    apply_received,
    make_response,
    parse,
    parse_via,
    route_response,
    stateless_branch,
)
from sipsock.sip.checks import check_address, parse_cseq
from sipsock.sip.grammar import parse_number, split_values
from sipsock.sockdef import parse_row
from sipsock.testing import FakeDirectory, FakeListener
from tests.fuzz_targets import PEER, SOCKET, cut, datagram_socket, feed_all, options_answerer

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "tests" / "data"

#: Messages users send, beside the torture tests and the saved fuzz inputs.
USUAL: Final = (
    b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 31\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\n",
    b"REGISTER sip:registrar.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: Bob <sip:bob@example.com>\r\n"
    b"f: Bob <sip:bob@example.com>;tag=456248\r\n"
    b"i: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"m: <sip:bob@192.0.2.9>;expires=7200\r\n"
    b"l: 0\r\n\r\n",
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-p1;received=192.0.2.1,"
    b" SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK776asdhds;rport=5070\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::9]:5060;branch=z9hG4bKnashds10\r\n"
    b"Max-Forwards: 0\r\n"
    b"From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"To: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 231 BYE\r\n"
    b"Require: 100rel, timer\r\n"
    b"Content-Length: 0\r\n\r\n",
)

#: The To tag the `Responder` adds: a hash of a random per-process salt, or random.
_ADDED_TAG = re.compile(
    rb"(\r\n(?:to|t)[ \t]*:[^\r\n]*;tag=)[0-9a-f]{12}(?:[0-9a-f]{4})?\r\n", re.I
)


class NoNames:
    """A resolver that knows no name (the records never wait for DNS)."""

    def resolve(self, host: str) -> Deferred[list[str]]:
        return defer.fail(ResolveError(host, "no DNS here"))


class ProxyHop:
    """A stateless proxy between socket ``a`` (calls come in) and ``b`` (they go out)."""

    #: Where the proxy sends what arrives on ``a``.
    CALLEE: Final = "sip:192.0.2.80:5080"

    def __init__(self) -> None:
        self.a = FakeListener(parse_row(1, "udp:127.0.0.1:5070", tag="a"), 1)
        self.b = FakeListener(parse_row(2, "udp:127.0.0.1:5071", tag="b"), 2)
        proxy = StatelessProxy(
            [{"in_tag": "a", "destination": self.CALLEE, "out_tag": "b"}],
            secret="behaviour",
            resolver=NoNames(),
            reactor=Clock(),
        )
        self.failures: list[str] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            failure = event.get("log_failure")
            if failure is not None:
                self.failures.append(f"{failure.type.__name__}: {failure.value}")

        self.dispatcher = Dispatcher(proxy, FakeDirectory(self.a, self.b))
        self.dispatcher.log = Logger(observer=observe)
        proxy.log = Logger(observer=observe)

    def hop(self, data: bytes, listener: FakeListener) -> list[tuple[str, bytes, object]]:
        """Deliver ``data`` on ``listener``; what each socket sent (replies included), and
        the failure the application raised, if any."""
        sent: list[tuple[str, bytes, object]] = []
        origin = Origin(
            listener.sdef,
            listener.slot,
            PEER,
            lambda reply: sent.append(("reply", _without_added_tag(reply), PEER)),
            None,
            listener,
        )
        self.dispatcher.message_received(data, origin)
        for name, each in (("a", self.a), ("b", self.b)):
            sent += [(name, out, address) for out, address in each.sent]
            each.sent.clear()
        sent += [("raised", failure.encode(), None) for failure in self.failures]
        self.failures.clear()
        return sent


@cache
def proxy_hop() -> ProxyHop:
    """The one proxy the records use (built on first use)."""
    return ProxyHop()


#: The top Via of a request coming to the proxy: the shapes the response hop reads.
_CALLER_VIAS: Final = (
    "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK776asdhds;rport",
    "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKa1;received=198.51.100.7;rport=40000",
    "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKb2;alias",
    "SIP/2.0/TLS caller.example.com;branch=z9hG4bKc3;maddr=192.0.2.70;ttl=1",
    "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKd4;rport",
)


def proxy_request(method: str, via: str, number: int) -> bytes:
    """A request for the proxy (no Route: it goes to the route's callee)."""
    body = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\n" if method == "INVITE" else ""
    return (
        f"{method} sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag=19283{number}\r\n"
        f"Call-ID: {number}-a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: {number} {method}\r\n"
        "Contact: <sip:alice@192.0.2.7:5070;transport=udp>\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def proxied_seeds() -> list[bytes]:
    """Requests as the proxy forwards them, and the callee's answers coming back.

    Every answer carries the proxy's own Via on top, so that mutations of it
    reach the proxy's response rules (splicing, the next hop of each Via
    shape), not only its check of the top Via.
    """
    found: list[bytes] = []
    hop = proxy_hop()
    for number, (method, via) in enumerate(
        (method, via) for via in _CALLER_VIAS for method in ("INVITE", "BYE", "OPTIONS")
    ):
        for name, out, _ in hop.hop(proxy_request(method, via, number), hop.a):
            request = parse(out)
            if name != "b" or not isinstance(request, Request):
                continue
            found.append(out)
            for code, phrase in ((100, "Trying"), (180, "Ringing"), (200, "OK"), (486, "Busy")):
                tag = None if code == 100 else "callee"
                found.append(bytes(make_response(request, code, phrase, to_tag=tag)))
    return found


def seeds() -> list[bytes]:
    """The unmutated inputs: usual messages, RFC 4475 torture tests, saved fuzz inputs."""
    found = [path.read_bytes() for path in sorted((DATA / "rfc4475").glob("*.dat"))]
    found += [path.read_bytes() for path in sorted((DATA / "fuzz").iterdir())]
    return [*USUAL, *proxied_seeds(), *found]


def _tokens() -> list[bytes]:
    tokens = []
    for line in (DATA / "sip.dict").read_text().splitlines():
        if line.startswith('"') and line.endswith('"'):
            tokens.append(line[1:-1].encode().decode("unicode_escape").encode("latin-1"))
    return tokens


def mutate(data: bytes, chance: random.Random, tokens: list[bytes]) -> bytes:
    """``data`` changed in one to three of the ways a hostile peer or a fuzzer changes bytes."""
    for _ in range(chance.randint(1, 3)):
        at = chance.randrange(len(data) + 1)
        end = min(len(data), at + chance.randint(0, 40))
        kind = chance.randrange(8)
        if kind == 0:
            data = data[:at] + bytes([chance.randrange(256)]) + data[at + 1 :]
        elif kind == 1:
            data = data[:at] + data[end:]
        elif kind == 2:
            data = data[:at] + chance.choice(tokens) + data[at:]
        elif kind == 3:
            data = data[:at]
        elif kind == 4:
            data = data.replace(b"\r\n", b"\n", chance.randint(1, 4))
        elif kind == 5:
            data = data[:at] + b"\r\n " + data[at:]
        elif kind == 6:
            data = re.sub(rb"\d+", lambda m: m.group() * chance.randint(2, 6), data, count=1)
        else:
            data = data[:end] + data[at:end] + data[end:]
    return data


def corpus(seed: int, count: int) -> list[bytes]:
    """The seeds, then ``count`` mutations of them (the same for every process)."""
    chance = random.Random(seed)
    base = seeds()
    tokens = _tokens()
    return base + [mutate(chance.choice(base), chance, tokens) for _ in range(count)]


def _without_added_tag(response: bytes) -> bytes:
    return _ADDED_TAG.sub(rb"\1<added>\r\n", response)


def _outcome(record: list[str], what: str, call: Callable[[], object]) -> object:
    """Record ``what`` gave (its repr, or the exception it raised); return the result."""
    try:
        result = call()
    except Exception as exc:  # any exception is a behaviour to compare
        record.append(f"{what} raised {type(exc).__name__}: {exc}")
        return None
    record.append(f"{what} = {result!r}")
    return result


def behaviour(data: bytes) -> list[str]:
    """Every result the SIP code gives for ``data``, one text line each."""
    record: list[str] = []
    for datagram in (True, False):
        message = _outcome(
            record, f"parse(datagram={datagram})", partial(parse, data, datagram=datagram)
        )
        if isinstance(message, Request | Response):
            _message_behaviour(record, message)
    text = data.decode("utf-8", "surrogateescape")
    for line in text.splitlines()[:12]:
        value = line.partition(":")[2]
        _outcome(record, "parse_via", partial(parse_via, value))
        _outcome(record, "parse_cseq", partial(parse_cseq, value))
        _outcome(record, "parse_number", partial(parse_number, value.strip()))
    _outcome(record, "frames", partial(feed_all, cut(data, data[:8])))
    _outcome(
        record,
        "datagram",
        lambda: [_without_added_tag(reply) for reply in datagram_socket().send(data)],
    )
    dispatcher, _ = options_answerer()
    _outcome(
        record,
        "options",
        lambda: _without_added_tag(dispatcher.answer_datagram(data, PEER, SOCKET) or b""),
    )
    proxy = proxy_hop()
    _outcome(record, "proxy from a", partial(proxy.hop, data, proxy.a))
    _outcome(record, "proxy from b", partial(proxy.hop, data, proxy.b))
    return record


def _message_behaviour(record: list[str], message: Request | Response) -> None:
    """The readings and rewritings of a parsed message that transports and apps do."""
    for name in ("max_forwards", "content_length", "cseq", "call_id", "top_via", "body"):
        _outcome(record, name, partial(getattr, message, name))
    for name in ("via", "contact", "route", "to", "from", "require"):
        for value in message.get_all(name):
            _outcome(record, f"split {name}", partial(split_values, value))
            _outcome(record, f"address {name}", partial(check_address, value))
    _outcome(record, "serialize", partial(bytes, message))
    top = _outcome(record, "top_via", partial(getattr, message, "top_via"))
    if isinstance(top, Via):
        _outcome(record, "route", lambda: repr(route_response(top)))
    if not isinstance(message, Request):
        _outcome(record, "validate", message.validate)
        return
    _outcome(record, "error_response", partial(getattr, message, "error_response"))
    _outcome(record, "branch", partial(stateless_branch, message, "salt"))
    _outcome(record, "received", partial(apply_received, message, "2001:db8::7", 5070))
    response = partial(make_response, message, 404, "Not Here", to_tag="t1", headers=[("X", "y")])
    _outcome(record, "response", lambda: bytes(response()))


def main(argv: list[str]) -> None:
    seed, count = int(argv[0]), int(argv[1])
    out = sys.stdout
    out.write(sip_core() + "\n")
    for data in corpus(seed, count):
        out.write(json.dumps(behaviour(data)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
