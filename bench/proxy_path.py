"""Print the stateless proxy's CPU per forwarded message in-process (no sockets, no SIPp).

Run from the repository root::

    .venv/bin/python bench/proxy_path.py
    .venv/bin/python bench/proxy_path.py --legs udp-tcp --calls 5000 --profile 25

A `Dispatcher` with the real `StatelessProxy` (one route, Record-Route on)
and a worker's real `WorkerDirectory` holding socket ``a`` (UDP, where calls
come in) and, for ``udp-udp``, socket ``b`` (UDP); for ``udp-tcp``, ``b``
is a TCP socket of the control process, reached through the worker's relay
(the relay here only records what it is asked to send), and the answers
that arrive on it are forwarded by the control process's own proxy. Each call is the
five messages of ``bench/proxy.py`` (INVITE, 200, ACK, BYE, 200), each
built from what the proxy forwarded the step before, as the SIPp caller and
callee build them; the replay of the recorded datagrams is timed in CPU time
(parsing, validation, the proxy's rules, the copy, the send call).
``--profile N`` prints the top N functions of a cProfile run of the same
calls. ``--sockets`` (``udp-udp``) replays the same datagrams once more
through real UDP sockets: each is sent from a socket bound to the caller's
or the callee's address, and only the proxy's socket read is timed (its
``doRead``: ``recvfrom``, the listener, the dispatcher, the proxy, the
``sendto`` of the forwarded copy); nobody sleeps on the receiving socket,
so a send wakes no one. The gap to the daemon's figure (``bench/proxy.py``)
is then the reactor, the wake-ups and the cold caches of a real run. Not a
test.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import socket
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from sipsock.apps import Dispatcher, StatelessProxy
from sipsock.seams import Origin
from sipsock.sip import Request, Response, parse
from sipsock.sockdef import parse_row
from sipsock.testing import FakeDirectory, FakeListener
from sipsock.transport.udp import open_udp_listener
from sipsock.workers.directory import BookEntry, WorkerDirectory

UAC = ("127.0.0.1", 15060)
UAS_PORT = 15080
MESSAGES_PER_CALL = 5
SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class Leg:
    """The proxy of one leg, fed datagrams as a worker's UDP socket would."""

    def __init__(self, leg: str) -> None:
        out_proto = leg.split("-")[1]
        self.a_def = parse_row(1, "udp:127.0.0.1:15070", tag="a")
        self.b_def = parse_row(2, f"{out_proto}:127.0.0.1:15071", tag="b")
        self.a = FakeListener(self.a_def, 1)
        self.relayed: list[tuple[str, bytes, tuple[str, int]]] = []
        self.directory = WorkerDirectory(self._relay)
        self.directory.hold(self.a)
        self.b = FakeListener(self.b_def, 2)
        if out_proto == "udp":
            self.directory.hold(self.b)
        else:
            # A worker holds a alone; b lives in the control process, which
            # forwards the answers arriving on it (its own proxy, directory).
            self.directory.announce(BookEntry(self.b_def, 2, False))
        transport = "" if out_proto == "udp" else f";transport={out_proto}"
        self.clock = Clock()
        self.proxy = StatelessProxy(
            [
                {
                    "in_tag": "a",
                    "destination": f"sip:127.0.0.1:{UAS_PORT}{transport}",
                    "out_tag": "b",
                }
            ],
            secret="bench",
            reactor=self.clock,
        )
        self.dispatcher = Dispatcher(self.proxy, self.directory)
        self.control = self.dispatcher
        if out_proto != "udp":
            control_proxy = StatelessProxy(self.proxy.routes, secret="bench", reactor=self.clock)
            self.control = Dispatcher(control_proxy, FakeDirectory(self.a, self.b))
        self.out_proto = out_proto

    def _relay(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        self.relayed.append((name, data, peer))
        return defer.succeed(None)

    def feed(self, data: bytes, listener: FakeListener, peer: tuple[str, int]) -> None:
        """Hand ``data`` to the process that reads ``listener``."""
        dispatcher = self.control if listener is self.b else self.dispatcher
        origin = Origin(
            sdef=listener.sdef,
            slot=listener.slot,
            peer=peer,
            reply=lambda reply: listener.sent.append((reply, peer)),
            listener=listener,
        )
        dispatcher.message_received(data, origin)

    def last_out(self) -> bytes:
        """What the proxy sent towards the callee last."""
        if self.out_proto == "udp":
            data, _ = self.b.sent[-1]
        else:
            _, data, _ = self.relayed[-1]
        return data

    def last_back(self) -> bytes:
        """What the proxy sent back towards the caller last."""
        data, _ = self.a.sent[-1]
        return data

    def clear(self) -> None:
        self.a.sent.clear()
        self.b.sent.clear()
        self.relayed.clear()


def _header_lines(message: Request | Response, names: tuple[str, ...]) -> list[str]:
    return [f"{n}: {v}" for n, v in message.headers if n.lower() in names]


def invite(call: int) -> bytes:
    host, port = UAC
    lines = [
        "INVITE sip:service@127.0.0.1:15070 SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{call}-1-0;rport",
        f"From: sipp <sip:sipp@{host}:{port}>;tag={call}SIPpTag00{call}",
        "To: service <sip:service@127.0.0.1:15070>",
        f"Call-ID: {call}-4242@{host}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:sipp@{host}:{port}>",
        "Max-Forwards: 70",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + SDP).encode()


def answer(request: Request, call: int, transport: str, *, sdp: bool) -> bytes:
    names = ("via", "record-route", "from", "call-id", "cseq")
    lines = ["SIP/2.0 200 OK", *_header_lines(request, names)]
    to = request.get("to") or ""
    lines.append(f"To: {to}" if ";tag=" in to else f"To: {to};tag={call}SIPpTag01{call}")
    lines.append(f"Contact: <sip:127.0.0.1:{UAS_PORT};transport={transport}>")
    body = SDP if sdp else ""
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def in_dialog(method: str, ok: Response, call: int, cseq: int) -> bytes:
    host, port = UAC
    # The caller's route set is the Record-Route in reverse (RFC 3261 12.1.2).
    routes = [v for n, v in ok.headers if n.lower() == "record-route"][::-1]
    contact = (ok.get("contact") or "").strip("<>")
    lines = [
        f"{method} {contact} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{call}-{cseq}-{method};rport",
        f"From: sipp <sip:sipp@{host}:{port}>;tag={call}SIPpTag00{call}",
        f"To: {ok.get('to')}",
        f"Call-ID: {call}-4242@{host}",
        f"CSeq: {cseq} {method}",
        f"Route: {', '.join(routes)}",
        f"Contact: <sip:sipp@{host}:{port}>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Step = tuple[bytes, FakeListener, tuple[str, int]]


def script(leg: Leg, calls: int) -> list[Step]:
    """The datagrams of ``calls`` calls, each built from what the proxy forwarded before."""
    uas = ("127.0.0.1", UAS_PORT)
    steps: list[Step] = []

    def step(data: bytes, on: FakeListener, peer: tuple[str, int]) -> None:
        steps.append((data, on, peer))
        leg.feed(data, on, peer)

    for call in range(calls):
        step(invite(call), leg.a, UAC)
        out = parse(leg.last_out())
        assert isinstance(out, Request)
        step(answer(out, call, leg.out_proto, sdp=True), leg.b, uas)
        ok = parse(leg.last_back())
        assert isinstance(ok, Response)
        step(in_dialog("ACK", ok, call, 1), leg.a, UAC)
        step(in_dialog("BYE", ok, call, 2), leg.a, UAC)
        bye = parse(leg.last_out())
        assert isinstance(bye, Request)
        step(answer(bye, call, leg.out_proto, sdp=False), leg.b, uas)
        parse(leg.last_back())
        leg.clear()
    return steps


def replay(leg: Leg, steps: list[Step]) -> float:
    """Feed ``steps`` again; CPU seconds it took in all (the feeding loop included).

    CPU time of this process, not wall time: on a machine shared with other
    work the wall clock counts their time too.
    """
    start = time.process_time()
    for index, (data, on, peer) in enumerate(steps):
        leg.feed(data, on, peer)
        if index % 1024 == 0:
            leg.clear()
    leg.clear()
    return time.process_time() - start


class SocketLeg:
    """The ``udp-udp`` leg on real sockets: a and b are real UDP listeners, read by hand."""

    def __init__(self) -> None:
        from twisted.internet import reactor

        a_def = parse_row(1, "udp:127.0.0.1:15070", tag="a")
        b_def = parse_row(2, "udp:127.0.0.1:15071", tag="b")
        directory = WorkerDirectory(_no_relay)
        proxy = StatelessProxy(
            [{"in_tag": "a", "destination": f"sip:127.0.0.1:{UAS_PORT}", "out_tag": "b"}],
            secret="bench",
            reactor=Clock(),
        )
        dispatcher = Dispatcher(proxy, directory)
        self.a = open_udp_listener(a_def, 1, dispatcher, reactor=reactor)
        self.b = open_udp_listener(b_def, 2, dispatcher, reactor=reactor)
        directory.hold(self.a)
        directory.hold(self.b)
        self.uac = _bound(UAC)
        self.uas = _bound(("127.0.0.1", UAS_PORT))

    def replay(self, steps: list[Step]) -> float:
        """CPU seconds of the proxy's reads of ``steps`` (sending and draining not counted)."""
        ports: dict[int, tuple[Any, socket.socket, tuple[str, int]]] = {
            1: (self.a._port, self.uac, ("127.0.0.1", 15070)),
            2: (self.b._port, self.uas, ("127.0.0.1", 15071)),
        }
        clock = time.process_time
        spent = 0.0
        for data, on, _ in steps:
            port, sender, address = ports[on.slot or 0]
            sender.sendto(data, address)
            start = clock()
            port.doRead()
            spent += clock() - start
            _drain(self.uac)
            _drain(self.uas)
        # The two clock readings per step are not the proxy's: measured alone, taken off.
        start = clock()
        for _ in steps:
            clock() - clock()
        return spent - (clock() - start)

    def close(self) -> None:
        self.a.stop()
        self.b.stop()
        self.uac.close()
        self.uas.close()


def _no_relay(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
    raise AssertionError("udp-udp relays nothing")


def _bound(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", default="udp-udp,udp-tcp")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3, help="best of this many runs")
    parser.add_argument("--profile", type=int, default=0, help="print the top N of cProfile")
    parser.add_argument(
        "--sockets", action="store_true", help="udp-udp through real UDP sockets too"
    )
    args = parser.parse_args()
    for name in args.legs.split(","):
        leg = Leg(name.strip())
        steps = script(leg, args.calls)
        best = float("inf")
        for _ in range(args.reps):
            gc.collect()
            best = min(best, replay(leg, steps) / len(steps) * 1e6)
        print(f"{name}: {best:.1f} us per forwarded message (best of {args.reps} x {args.calls})")
        if args.sockets and name.strip() == "udp-udp":
            real = SocketLeg()
            try:
                best = float("inf")
                for _ in range(args.reps):
                    gc.collect()
                    best = min(best, real.replay(steps) / len(steps) * 1e6)
            finally:
                real.close()
            print(f"{name}, real sockets: {best:.1f} us per forwarded message (read to sendto)")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            replay(leg, steps)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
