# mypy: disable-error-code="no-untyped-call"
"""Print the CPU one relayed message costs per hop: AMP boxes against relay-channel frames.

Run from the repository root (or with ``PYTHONPATH`` set to a tree)::

    .venv/bin/python bench/relay_hop.py
    .venv/bin/python bench/relay_hop.py --messages 20000 --batch 1,8

One hop is what a worker pays to hand a message to another process and what
that process pays to take it and answer: a batch of ``--batch`` relayed SIP
messages is sent, read, handed to a send that does nothing, answered, and
the answer read. Both ends are real Twisted UNIX transports over a real
socket pair, driven by hand (no reactor runs, so no wake-up is counted:
``doRead`` and the writes are what the reactor would call). ``amp``: the
``SendManyThroughSockets`` round trip every relay took before; ``channel``:
a `sipsock.workers.relaychannel` frame and its answer (skipped when the tree
has no relay channel). CPU is ``time.thread_time`` (not wall time: the
machine may be shared). Not a test.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.unix import Server
from twisted.protocols import amp

from sipsock.workers.commands import Relayed, SendManyThroughSockets, encode_relays
from sipsock.workers.directwrite import write_at_once
from sipsock.workers.relaybatch import send_relays

SOCKET = "tcp:127.0.0.1:5071"
MESSAGE = (
    b"INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\n" + b"X-Filler: " + b"x" * 500 + b"\r\n\r\n"
)
reactor: Any = _reactor


def sent(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
    return defer.succeed(None)


def pair(make: Callable[[], Any]) -> tuple[Any, Server, Any, Server]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    b.setblocking(False)
    ours, theirs = make(), make()
    our_end = Server(a, ours, None, None, 1, reactor)
    their_end = Server(b, theirs, None, None, 1, reactor)
    ours.makeConnection(our_end)
    theirs.makeConnection(their_end)
    return ours, our_end, theirs, their_end


class Worker(amp.AMP):
    """The worker's end: writes at once, as the daemon's (`write_at_once`)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        write_at_once(self.transport)


class Control(Worker):
    @SendManyThroughSockets.responder
    def many(self, messages: bytes) -> Deferred[dict[str, Any]]:
        return send_relays(sent, messages).addCallback(lambda failed: {"failed": failed})


def amp_hop(batch: bytes) -> Callable[[], None]:
    worker, worker_end, _control, control_end = pair(Control)  # both answer; one asks

    def one() -> None:
        done = worker.callRemote(SendManyThroughSockets, messages=batch)
        control_end.doRead()
        worker_end.doRead()
        assert done.called

    return one


def channel_hop(batch: bytes) -> Callable[[], None] | None:
    try:
        from sipsock.workers.relaychannel import RelayChannel
    except ImportError:
        return None

    def serve(messages: bytes) -> Deferred[bytes]:
        return send_relays(sent, messages)

    worker, worker_end, _control, control_end = pair(lambda: RelayChannel(serve, "bench"))

    def one() -> None:
        done = worker.call(batch)
        control_end.doRead()
        worker_end.doRead()
        assert done.called

    return one


def measure(one: Callable[[], None], rounds: int) -> float:
    for _ in range(min(rounds, 500)):  # warm up
        one()
    started = time.thread_time()
    for _ in range(rounds):
        one()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="messages per figure")
    parser.add_argument("--batch", default="1,8", help="messages per batch (comma list)")
    args = parser.parse_args()
    print("relay hop, CPU per message (both ends, thread time)")
    print(f"{'batch':>5}  {'amp us/msg':>10}  {'channel us/msg':>14}")
    for size in (int(b) for b in args.batch.split(",")):
        batch = encode_relays([Relayed(SOCKET, "127.0.0.1", 5080, MESSAGE)] * size)
        rounds = max(1, args.messages // size)
        figures = []
        for make in (amp_hop, channel_hop):
            one = make(batch)
            figures.append(
                "-" if one is None else f"{measure(one, rounds) / (rounds * size) * 1e6:.1f}"
            )
        print(f"{size:>5}  {figures[0]:>10}  {figures[1]:>14}")


if __name__ == "__main__":
    main()
