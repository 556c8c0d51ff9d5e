# mypy: disable-error-code="no-untyped-call"
"""Print where the CPU of one answered UDP OPTIONS goes, in this process. Not a test.

Run from the repository root::

    .venv/bin/python bench/options_path.py                 # hot loops, then paced runs
    .venv/bin/python bench/options_path.py --rates 2000,8000 --seconds 4
    .venv/bin/python bench/options_path.py --profile       # cProfile of the receive path
    .venv/bin/python bench/options_path.py --kinds --rates ''   # general path per message kind
    .venv/bin/python bench/options_path.py --kinds --profile-kind INVITE

Two kinds of figures:

* hot loops (the same SIPp-like OPTIONS over and over, no I/O; thread CPU
  time, best of nine): the general path (parse, validate, apply_received,
  Responder, serialize) against the OPTIONS shortcut
  (`sipsock.sip.options_answer.answer_options`), and the UDP protocol's
  ``datagramReceived`` with each; then keep-alives from one peer with the
  CSeq rising by one each (as is), and from 5,000 peers (a source port each,
  CSeq rising from peer to peer, the same 5,000 over and over) through
  ``datagramReceived`` on the general path and as is, and from a new peer
  every message (an address of its own each, never seen before: what an
  edge gets from many phones, and what SIPp ``-t un`` sends the daemon);
* with ``--kinds``, the general path (``datagramReceived``, the shortcut
  off) per message kind a SIP edge carries: INVITE, ACK, REGISTER and BYE
  (answered 501 by the Responder, the ACK absorbed) and a 200 response
  (absorbed), each as SIPp sends it, a new Call-ID, branch and tags per
  message (one peer);
* paced runs through a real loopback socket and the real epoll reactor: a
  sender process sends OPTIONS at a fixed rate and reads the answers; this
  process's CPU time (``time.process_time``) per datagram is printed for the
  listener as it is (on the UDP workers' reactor), for a protocol that
  throws every datagram away (the reactor's own cost per datagram: wake-up,
  ``recvfrom``, Twisted's read loop), for a bare loop of epoll and
  ``recvfrom`` with no Twisted at all (the floor of any Python receiver
  here), and with the shortcut timed inside the process (``answer_datagram``
  and ``sendto`` alone). At low rates every datagram is a wake-up of its own
  and runs with cold caches; that, not the SIP work, is most of its cost.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import textwrap
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from tests.sipp import SIPP_OPTIONS

SENDER = textwrap.dedent(
    """
    import socket, sys, time
    port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0)); s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    me = s.getsockname()[1]
    text = (
        "OPTIONS sip:service@127.0.0.1:{p} SIP/2.0\\r\\n"
        "Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{i};rport\\r\\n"
        "From: sipp <sip:sipp@127.0.0.1:{me}>;tag={i}\\r\\n"
        "To: <sip:service@127.0.0.1:{p}>\\r\\n"
        "Call-ID: {i}-1@127.0.0.1\\r\\nCSeq: 1 OPTIONS\\r\\n"
        "Contact: <sip:sipp@127.0.0.1:{me};transport=UDP>\\r\\n"
        "Max-Forwards: 70\\r\\nAccept: application/sdp\\r\\nContent-Length: 0\\r\\n\\r\\n"
    )
    count = int(rate * seconds); got = 0; start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        while True:
            try:
                while True:
                    s.recv(65535); got += 1
            except BlockingIOError:
                pass
            now = time.monotonic()
            if now >= due:
                break
            time.sleep(min(due - now, 0.0005))
        s.sendto(text.format(p=port, me=me, i=i).encode(), ("127.0.0.1", port))
    end = time.monotonic() + 2
    while got < count and time.monotonic() < end:
        try:
            s.recv(65535); got += 1
        except BlockingIOError:
            time.sleep(0.001)
    print(count, got)
    """
)

OPTIONS = SIPP_OPTIONS
PEER = ("127.0.0.1", 5061)
#: Keep-alives from many peers: one source port each, CSeq rising per request.
PEERS = 5000


def many_peers(count: int = PEERS) -> list[tuple[bytes, tuple[str, int]]]:
    """``count`` SIPp-like OPTIONS, each from a port of its own, with CSeq rising."""
    made = []
    for i in range(count):
        port = 10000 + i
        text = SIPP_OPTIONS.replace(b":5061", b":%d" % port).replace(b"tag=1", b"tag=%d" % i)
        text = text.replace(b"CSeq: 1 ", b"CSeq: %d " % (i + 1)).replace(b"1-1234", b"%d-1234" % i)
        made.append((text, ("127.0.0.1", port)))
    return made


def new_peers(count: int, first: int = 0) -> list[tuple[bytes, tuple[str, int]]]:
    """``count`` SIPp-like OPTIONS from peers numbered ``first`` on, each seen once.

    Each peer has an address of its own (``10.x.y.z``, a port of its own) in
    its Via, From and Contact, as phones behind an edge do: at 10,000
    keep-alives a second from peers sending one every 15-30 s, a peer's next
    OPTIONS comes after hundreds of thousands of others, so nothing
    remembered about that one peer is still there. (SIPp ``-t un`` is the
    same traffic from one address.)
    """
    made = []
    for number in range(first, first + count):
        host = f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
        port = 1024 + number % 60000
        sent_by = f"{host}:{port}".encode()
        text = SIPP_OPTIONS.replace(b"127.0.0.1:5061", sent_by)
        text = text.replace(b"tag=1", b"tag=%d" % number)
        text = text.replace(b"CSeq: 1 ", b"CSeq: %d " % (number + 1))
        made.append((text.replace(b"1-1234", b"%d-1234" % number), (host, port)))
    return made


def one_peer_rising(count: int = PEERS) -> list[tuple[bytes, tuple[str, int]]]:
    """``count`` SIPp-like OPTIONS from one peer, the CSeq rising by one each."""
    made = []
    for i in range(count):
        text = SIPP_OPTIONS.replace(b"CSeq: 1 ", b"CSeq: %d " % (i + 1))
        made.append((text.replace(b"1-1234", b"%d-1234" % i), PEER))
    return made


def _kind(text: str) -> Callable[[int], bytes]:
    lines = textwrap.dedent(text).strip("\n").split("\n")
    template = "\r\n".join(lines) + "\r\n\r\n"
    return lambda i: template.format(i=i).encode()


#: One message of each kind, as SIPp sends them (``{i}``: the call number).
KINDS: dict[str, Callable[[int], bytes]] = {
    "INVITE -> 501": _kind(
        """
        INVITE sip:service@127.0.0.1:5070 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-{i}-0;rport
        From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}
        To: <sip:service@127.0.0.1:5070>
        Call-ID: {i}-1234@127.0.0.1
        CSeq: 1 INVITE
        Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>
        Max-Forwards: 70
        Content-Length: 0
        """
    ),
    "ACK (absorbed)": _kind(
        """
        ACK sip:service@127.0.0.1:5070 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-{i}-0;rport
        From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}
        To: <sip:service@127.0.0.1:5070>;tag=4f0a4c5b2e1d3a69
        Call-ID: {i}-1234@127.0.0.1
        CSeq: 1 ACK
        Max-Forwards: 70
        Content-Length: 0
        """
    ),
    "REGISTER -> 501": _kind(
        """
        REGISTER sip:127.0.0.1:5070 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-{i}-0;rport
        From: <sip:user{i}@127.0.0.1>;tag={i}
        To: <sip:user{i}@127.0.0.1>
        Call-ID: {i}-1234@127.0.0.1
        CSeq: 1 REGISTER
        Contact: <sip:user{i}@127.0.0.1:5061;transport=UDP>;expires=3600
        Max-Forwards: 70
        Expires: 3600
        User-Agent: SIPp
        Content-Length: 0
        """
    ),
    "BYE -> 501": _kind(
        """
        BYE sip:service@127.0.0.1:5070 SIP/2.0
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-{i}-2;rport
        From: sipp <sip:sipp@127.0.0.1:5061>;tag={i}
        To: <sip:service@127.0.0.1:5070>;tag=4f0a4c5b2e1d3a69
        Call-ID: {i}-1234@127.0.0.1
        CSeq: 2 BYE
        Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>
        Max-Forwards: 70
        Content-Length: 0
        """
    ),
    "response 200 (absorbed)": _kind(
        """
        SIP/2.0 200 OK
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{i}-1;received=127.0.0.1;rport=5070
        From: <sip:service@127.0.0.1:5070>;tag={i}
        To: sipp <sip:sipp@127.0.0.1:5061>;tag=99{i}
        Call-ID: {i}-5678@127.0.0.1
        CSeq: 1 INVITE
        Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>
        Content-Length: 0
        """
    ),
}
#: Messages of each kind per round (distinct call numbers).
KIND_ROUND = 500


def general_responder() -> Any:
    """A `Responder` that gives no OPTIONS reply: every OPTIONS takes the general path."""
    from sipsock.apps import Responder
    from sipsock.sip.options_answer import OptionsReply
    from sipsock.sockdef import SocketDef

    class GeneralPathResponder(Responder):
        def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
            return None

    return GeneralPathResponder()


def general_listener() -> Any:
    """A UDP listener whose sink is a Dispatcher + Responder with the shortcut off."""
    from twisted.internet.testing import FakeDatagramTransport

    from sipsock.apps import Dispatcher
    from sipsock.sockdef import parse_row
    from sipsock.transport.udp import UdpListener

    dispatcher = Dispatcher(general_responder())
    listener = UdpListener(parse_row(1, "udp:127.0.0.1:5070"), 1, dispatcher, reactor=None)
    listener.protocol.makeConnection(FakeDatagramTransport())
    return listener


def kind_loops(number: int) -> list[tuple[str, float]]:
    """The general path per message kind, through ``datagramReceived`` (µs per message)."""
    listener = general_listener()
    transport = listener.protocol.transport
    receive = listener.protocol.datagramReceived
    rows = []
    for name, make in KINDS.items():
        messages = [make(i) for i in range(KIND_ROUND)]

        def run(messages: list[bytes] = messages) -> None:
            for data in messages:
                receive(data, PEER)
            transport.written.clear()

        rounds = max(1, number // KIND_ROUND)
        rows.append((name, best_us(run, rounds, KIND_ROUND)))
    return rows


def best_us(call: Callable[[], object], number: int, per: int = 1) -> float:
    """Best of nine, in this thread's CPU time: microseconds per call (per ``per`` of a call)."""
    timer = time.thread_time
    return min(timeit.repeat(call, number=number, repeat=9, timer=timer)) / number / per * 1e6


def best_new_us(receive: Callable[[bytes, Any], None], number: int) -> float:
    """Best of nine runs of ``number`` OPTIONS, each from a peer not seen before (thread CPU)."""
    best = float("inf")
    for run in range(9):
        messages = new_peers(number, (run + 1) * number)
        start = time.thread_time()
        for data, peer in messages:
            receive(data, peer)
        best = min(best, time.thread_time() - start)
    return best / number * 1e6


def hot_loops(number: int) -> list[tuple[str, float]]:
    from twisted.internet.testing import FakeDatagramTransport

    from sipsock.apps import Dispatcher, Responder
    from sipsock.seams import Origin
    from sipsock.sip.options_answer import answer_options
    from sipsock.sockdef import parse_row
    from sipsock.transport.udp import UdpListener

    sdef = parse_row(1, "udp:127.0.0.1:5070")
    responder = Responder()
    dispatcher = Dispatcher(responder)
    reply = dispatcher.options_reply(sdef)
    assert reply is not None
    memo = dispatcher.options_memo
    origin = Origin(sdef, 1, PEER, lambda data: None)

    general_dispatcher = Dispatcher(general_responder())

    def listener(sink: Dispatcher) -> UdpListener:
        made = UdpListener(sdef, 1, sink, reactor=None)
        made.protocol.makeConnection(FakeDatagramTransport())
        return made

    general, fast = listener(general_dispatcher), listener(dispatcher)
    peers = many_peers()
    rising = one_peer_rising()
    rounds = max(1, number // len(peers))

    def peers_through(
        receive: Callable[[bytes, Any], None], messages: list[tuple[bytes, tuple[str, int]]] = peers
    ) -> Callable[[], None]:
        def run() -> None:
            for data, peer in messages:
                receive(data, peer)

        return run

    return [
        (
            "general path: Dispatcher + Responder",
            best_us(lambda: dispatcher.message_received(OPTIONS, origin), number),
        ),
        (
            "shortcut: answer_options",
            best_us(lambda: answer_options(OPTIONS, *PEER, reply, memo), number),
        ),
        (
            "datagramReceived, general path",
            best_us(lambda: general.protocol.datagramReceived(OPTIONS, PEER), number),
        ),
        (
            "datagramReceived, shortcut",
            best_us(lambda: fast.protocol.datagramReceived(OPTIONS, PEER), number),
        ),
        (
            "datagramReceived as is (shortcut first), one peer, CSeq rising",
            best_us(peers_through(fast.protocol.datagramReceived, rising), rounds, len(rising)),
        ),
        (
            f"datagramReceived, general path, {PEERS:,} peers, CSeq rising",
            best_us(peers_through(general.protocol.datagramReceived), rounds, len(peers)),
        ),
        (
            f"datagramReceived as is (shortcut first), {PEERS:,} peers, CSeq rising",
            best_us(peers_through(fast.protocol.datagramReceived), rounds, len(peers)),
        ),
        (
            "datagramReceived as is (shortcut first), a new peer every message, CSeq rising",
            best_new_us(fast.protocol.datagramReceived, number),
        ),
    ]


def paced(rate: int, seconds: float, mode: str) -> str:
    """One paced run in a fresh interpreter (a reactor runs once); its result line."""
    code = f"from bench_options_path_child import run; run({rate}, {seconds}, {mode!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.getcwd()])}
    done = subprocess.run(
        [sys.executable, "-c", code.replace("bench_options_path_child", "options_path")],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds * 4 + 60,
        check=False,
    )
    if done.returncode:
        return f"failed: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout.strip().splitlines()[-1]


def bare(rate: int, seconds: float) -> None:
    """The child of `paced` in mode ``bare``: epoll and ``recvfrom``, nothing else.

    The floor of any Python receiver on this machine: what one datagram
    costs a process that wakes up for it and reads it, with no reactor and
    no SIP.
    """
    import select

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        poller = select.epoll()
        poller.register(sock.fileno(), select.EPOLLIN)
        cpu = time.process_time()
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(port), str(rate), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        received = 0
        while sender.poll() is None:
            for _ in poller.poll(0.2):
                try:
                    while True:
                        sock.recvfrom(65535)
                        received += 1
                except BlockingIOError:
                    pass
        used = time.process_time() - cpu
    sent = [*sender.stdout.read().split(), "?"][0]  # type: ignore[union-attr]
    print(
        f"{rate}/s {'bare':>9}: {used / (rate * seconds) * 1e6:6.1f} us per datagram"
        f" (sent {sent}, read {received}, answered 0)",
        flush=True,
    )


class TimedShortcut:
    """A sink that times the dispatcher's ``answer_datagram`` (the shortcut) in ``inner``."""

    def __init__(self, dispatcher: Any, inner: list[int]) -> None:
        self.dispatcher = dispatcher
        self.inner = inner
        self.message_received = dispatcher.message_received

    def answer_datagram(self, data: bytes, peer: tuple[str, int], sdef: Any) -> bytes | None:
        start = time.thread_time_ns()
        result: bytes | None = self.dispatcher.answer_datagram(data, peer, sdef)
        self.inner[0] += time.thread_time_ns() - start
        self.inner[2] += result is not None
        return result


def run(rate: int, seconds: float, mode: str) -> None:
    """The child of `paced`: serve one loopback socket while the sender runs."""
    if mode == "bare":
        bare(rate, seconds)
        return
    from twisted.internet.main import installReactor

    from sipsock.workers.epoll import ExclusiveEPollReactor

    installReactor(ExclusiveEPollReactor())
    from twisted.internet import reactor as installed

    from sipsock.apps import Dispatcher, Responder
    from sipsock.sockdef import parse_row
    from sipsock.transport.udp import open_udp_listener

    reactor: Any = installed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # answer_datagram's time, sendto's time, the datagrams answered at once.
    inner = [0, 0, 0]
    sink: Any = Dispatcher(Responder())
    if mode == "timed":
        sink = TimedShortcut(sink, inner)
    listener = open_udp_listener(parse_row(1, f"udp:127.0.0.1:{port}"), 1, sink, reactor=reactor)
    if mode == "discard":
        listener.protocol.deliver = lambda datagram, addr: None
    elif mode == "timed":
        sendto = listener.path.sendto
        assert sendto is not None

        def timed_sendto(data: bytes, peer: Any) -> int:
            start = time.thread_time_ns()
            sent: int = sendto(data, peer)
            inner[1] += time.thread_time_ns() - start
            return sent

        listener.path.sendto = timed_sendto

    def start() -> None:
        cpu = time.process_time()
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(port), str(rate), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )

        def wait() -> None:
            if sender.poll() is None:
                reactor.callLater(0.2, wait)
                return
            used = time.process_time() - cpu
            sent, got = [*sender.stdout.read().split(), "?", "?"][:2]  # type: ignore[union-attr]
            line = f"{rate}/s {mode:>9}: {used / (rate * seconds) * 1e6:6.1f} us per datagram"
            line += f" (sent {sent}, answered {got})"
            if mode == "timed" and inner[2]:
                line += (
                    f"; inside it answer_datagram {inner[0] / inner[2] / 1000:.1f} us,"
                    f" sendto {inner[1] / inner[2] / 1000:.1f} us"
                )
            print(line, flush=True)
            reactor.stop()

        wait()

    reactor.callWhenRunning(start)
    reactor.run()


def profile_kind(kind: str, number: int) -> None:
    """Print a cProfile of the general path for the first kind whose name starts so."""
    make = next(make for name, make in KINDS.items() if name.startswith(kind))
    listener = general_listener()
    messages = [make(i) for i in range(number)]
    profile = cProfile.Profile()

    def receive_all() -> None:
        for data in messages:
            listener.protocol.datagramReceived(data, PEER)

    profile.runcall(receive_all)
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per hot loop (20000)")
    parser.add_argument("--rates", default="2000,8000", help="paced rates (2000,8000); '' for none")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per paced run (4)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the hot path")
    parser.add_argument(
        "--kinds", action="store_true", help="the general path per message kind (INVITE, ...)"
    )
    parser.add_argument("--profile-kind", default="", help="print a cProfile of one kind (INVITE)")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as handle:
        print(f"load average {' '.join(handle.read().split()[:3])}")
    if args.kinds or args.profile_kind:
        print("general path per message kind (datagramReceived, thread CPU, best of 9):")
        for name, value in kind_loops(args.number):
            print(f"  {value:7.1f} us  {name}")
        if args.profile_kind:
            profile_kind(args.profile_kind, args.number)
        return
    print("hot loops (thread CPU, best of 9):")
    for name, value in hot_loops(args.number):
        print(f"  {value:7.1f} us  {name}")
    if args.profile:
        from sipsock.apps import Dispatcher, Responder
        from sipsock.sockdef import parse_row
        from sipsock.transport.udp import UdpListener

        listener = UdpListener(
            parse_row(1, "udp:127.0.0.1:5070"), 1, Dispatcher(Responder()), reactor=None
        )
        from twisted.internet.testing import FakeDatagramTransport

        listener.protocol.makeConnection(FakeDatagramTransport())
        profile = cProfile.Profile()

        def receive_all() -> None:
            for _ in range(args.number):
                listener.protocol.datagramReceived(OPTIONS, PEER)

        profile.runcall(receive_all)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    for rate in [int(part) for part in args.rates.split(",") if part.strip()]:
        for mode in ("as is", "discard", "bare", "timed"):
            print("  " + paced(rate, args.seconds, mode), flush=True)


if __name__ == "__main__":
    main()
