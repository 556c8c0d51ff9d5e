# mypy: disable-error-code="no-untyped-call"
"""Print the CPU a worker's send through the control process costs, both sides, in-process.

Run from the repository root::

    .venv/bin/python bench/relay_path.py
    .venv/bin/python bench/relay_path.py --messages 20000 --batch 1,8,64

A UDP worker whose application sends through a socket it does not hold (a
TCP socket, say: a stateless proxy forwarding UDP to TCP) asks the control
process over AMP. Two real AMP protocols are joined by an in-memory
transport (``twisted.test.iosim``); the control side answers as the daemon's
does, its send itself doing nothing. Measured: CPU time per message of both
sides together, for one `SendThroughSocket` per message (the old way) and
for `SendManyThroughSockets` batches of ``--batch`` messages (what
`RelayBatcher` sends in one reactor turn: one message at low rates, more as
the rate rises). Not a test.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.test import iosim

from sipsock.workers.commands import SendManyThroughSockets, SendThroughSocket
from sipsock.workers.relaybatch import RelayBatcher, send_relays

PEER = ("127.0.0.1", 5080)
SOCKET = "tcp:127.0.0.1:5071"


class Control(amp.AMP):
    """The control process's end: answers both commands as the supervisor does."""

    def _send(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        return defer.succeed(None)

    @SendThroughSocket.responder
    def send_through_socket(self, socket: str, host: str, port: int, data: bytes) -> Any:
        return self._send(socket, data, (host, port)).addCallback(lambda _: {})

    @SendManyThroughSockets.responder
    def send_many(self, messages: bytes) -> Any:
        return send_relays(self._send, messages).addCallback(lambda failed: {"failed": failed})


def joined() -> tuple[amp.AMP, iosim.IOPump]:
    worker, control = amp.AMP(), Control()
    pump = iosim.connect(
        worker,
        iosim.makeFakeClient(worker),
        control,
        iosim.makeFakeServer(control),
    )
    return worker, pump


def one_by_one(messages: int, data: bytes) -> float:
    worker, pump = joined()
    start = time.process_time()
    for _ in range(messages):
        worker.callRemote(SendThroughSocket, socket=SOCKET, host=PEER[0], port=PEER[1], data=data)
        pump.flush()
    return (time.process_time() - start) / messages


def batched(messages: int, data: bytes, batch: int) -> float:
    worker, pump = joined()

    def send_batch(encoded: bytes) -> Deferred[bytes]:
        sent: Deferred[Any] = worker.callRemote(SendManyThroughSockets, messages=encoded)
        return sent.addCallback(lambda answer: answer["failed"])

    batcher = RelayBatcher(send_batch, Clock())
    start = time.process_time()
    for _ in range(messages // batch):
        for _ in range(batch):
            batcher.relay(SOCKET, data, PEER)
        batcher.flush()
        pump.flush()
    return (time.process_time() - start) / (messages // batch * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--size", type=int, default=900, help="bytes per message")
    parser.add_argument("--batch", default="1,4,16,64", help="messages per batch to try")
    parser.add_argument("--reps", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    data = b"x" * args.size
    best = min(one_by_one(args.messages, data) for _ in range(args.reps))
    print(f"SendThroughSocket, one per message: {best * 1e6:.1f} us per message (both sides)")
    for batch in (int(b) for b in args.batch.split(",")):
        best = min(batched(args.messages, data, batch) for _ in range(args.reps))
        print(f"SendManyThroughSockets, {batch:3d} per batch: {best * 1e6:.1f} us per message")


if __name__ == "__main__":
    main()
