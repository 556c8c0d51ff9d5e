"""`DirectRoutes`: a worker's relays straight to the worker of another pool that sends them.

A UDP worker's application that sends over a stream socket (a stateless
proxy forwarding UDP → TCP), and a stream worker's that sends over a UDP
socket (the answers coming back), used to relay every message through the
control process, which passed it on to the worker holding the socket and
the answer back: two hops and three processes per message. The control
process now gives each UDP worker and each stream worker a UNIX socket pair
between them (`OpenChannel`, `sipsock.workers.channels`), a
`sipsock.workers.relaychannel` on each end, so a message crosses one hop:

* a send through a stream socket goes to the stream worker the peer's
  address hashes to, as the control process picks the worker that opens a
  connection (`sipsock.workers.stream_pool.opener_index`, over the stream
  channels in seat order); that worker sends on its connection to the peer,
  or, when it holds none, relays the message through the control process,
  which knows who holds the peer's connection (an accepted one) or has it
  opened;
* a send through a UDP socket goes to a worker of the pool that holds it
  (static sockets in the static pool, dynamic ones in the dynamic pool), by
  the peer's hash; that worker sends it from its own copy;
* anything else, or when there is no channel (one is being replaced), goes
  through the control process as before.

A stream worker that receives a message for a peer whose connection another
worker holds (an accepted one: a client that connected to that worker)
sends it through the control process and hints the sender so (a ``H``
frame): the sender then relays that peer's later messages through the
control process itself (two hops, not three), remembered in a bounded memo.
The connection the hashed worker opens itself needs no hint.

Order of one peer's messages: a message to a (socket, peer) takes the path
(channel or control process) of the messages to the same (socket, peer)
still waiting for their answer, so a later message never overtakes an
earlier one that went the other way (a channel that opened or closed
meanwhile, a connection that became ready meanwhile). A channel that closes
(its worker died) fails the messages waiting on it, with the reason; the
next messages go through the control process until the replacement worker
is given a channel.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from sipsock.seams import Listener
from sipsock.sip.memo import Memo
from sipsock.workers.answerdeadline import AnswerDeadlines
from sipsock.workers.commands import WorkerError
from sipsock.workers.directory import Relay
from sipsock.workers.relaybatch import RelayBatcher, send_relays
from sipsock.workers.relaychannel import RelayChannel
from sipsock.workers.stream_pool import opener_index

#: The pools a channel can lead to.
POOLS: Final = ("dynamic", "static", "stream")
#: Seconds a batch waits for the other worker's answer before its messages fail
#: (a hung worker is found and replaced by the control process's own deadlines).
ANSWER_DEADLINE: Final = 10.0

#: (socket name, peer host, peer port).
Key = tuple[str, str, int]


class Route:
    """One channel to a worker of another pool, with its per-turn batcher."""

    def __init__(self, channel: RelayChannel, pool: str, index: int, reactor: Any) -> None:
        self.channel = channel
        self.pool = pool
        self.index = index
        self.reactor = reactor
        self.batcher = RelayBatcher(self._send_batch, reactor)
        label = channel.label

        def late() -> Exception:
            return WorkerError(f"{label}: no answer within {ANSWER_DEADLINE:g} s")

        #: One timer for the answers of every batch sent on the channel.
        self.deadlines: AnswerDeadlines[bytes] = AnswerDeadlines(ANSWER_DEADLINE, reactor, late)

    def _send_batch(self, messages: bytes) -> Deferred[bytes]:
        return self.deadlines.watch(self.channel.call(messages))

    @property
    def closed(self) -> bool:
        return not self.channel.open

    def relay(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        return self.batcher.relay(name, data, peer)


class DirectRoutes:
    """This worker's channels to the workers of other pools, and the path of each relay.

    ``to_control`` relays through the control process; ``held`` gives the
    socket of that name this worker holds (None: not here); ``static`` says
    whether a socket name is one of the daemon's static sockets.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        to_control: Relay,
        held: Callable[[str], Listener | None],
        static: Callable[[str], bool],
    ) -> None:
        self.reactor = reactor
        self._to_control = to_control
        self._held = held
        self._static = static
        self._routes: dict[str, list[Route]] = {pool: [] for pool in POOLS}
        #: (socket, peer) -> [path, messages waiting for their answer on it].
        self._in_flight: dict[Key, list[Any]] = {}
        #: Stream peers whose connection a worker other than the hashed one holds.
        self._elsewhere: Memo[Key, bool] = Memo()

    # --- channels ----------------------------------------------------------------------

    def open(self, fd: int, peer: str, pool: str, index: int) -> None:
        """Use ``fd`` (this worker's end of a socket pair) as the channel to ``peer``.

        Raises `WorkerError` for an unknown pool or a descriptor that cannot
        be used (closed either way).
        """
        if pool not in POOLS:
            os.close(fd)
            raise WorkerError(f"OpenChannel: unknown pool {pool!r}")
        channel = RelayChannel(
            lambda messages: self.serve(messages, channel),
            f"direct channel to {pool} worker {peer}",
        )
        try:
            os.set_blocking(fd, False)
            self.reactor.adoptStreamConnection(
                fd, socket.AF_UNIX, Factory.forProtocol(lambda: channel)
            )
        except OSError as exc:
            raise WorkerError(f"OpenChannel: cannot use the descriptor: {exc}") from exc
        finally:
            os.close(fd)
        self.add(channel, pool, index)

    def add(self, channel: RelayChannel, pool: str, index: int) -> None:
        """Relay to ``pool``'s worker in seat ``index`` on ``channel`` (connected already)."""
        route = Route(channel, pool, index, self.reactor)
        channel.on_hint = self._hinted
        routes = self._routes[pool]
        for old in [r for r in routes if r.index == index]:
            routes.remove(old)  # its worker was replaced: the old channel closes by itself
        routes.append(route)
        routes.sort(key=lambda r: r.index)
        channel.on_lost = lambda: self._lost(route)

    def _lost(self, route: Route) -> None:
        route.deadlines.stop()
        routes = self._routes[route.pool]
        if route in routes:
            routes.remove(route)

    def channels(self, pool: str) -> list[RelayChannel]:
        """The open channels to ``pool``'s workers, in seat order."""
        return [route.channel for route in self._routes[pool]]

    # --- sending -----------------------------------------------------------------------

    def relay(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send through the daemon's socket ``name`` from the worker that holds it."""
        key = (name, peer[0], peer[1])
        waiting = self._in_flight.get(key)
        if waiting is not None and not (isinstance(waiting[0], Route) and waiting[0].closed):
            path = waiting[0]
        else:
            path = self._choose(name, peer)
            waiting = self._in_flight[key] = [path, 0]
        waiting[1] += 1
        sending = (
            path.relay(name, data, peer)
            if isinstance(path, Route)
            else self._to_control(name, data, peer)
        )
        return sending.addBoth(self._answered, key, waiting)

    def waiting(self, name: str, peer: tuple[str, int]) -> bool:
        """Whether messages to ``peer`` through ``name`` still wait for their answer."""
        return (name, peer[0], peer[1]) in self._in_flight

    def _choose(self, name: str, peer: tuple[str, int]) -> Route | None:
        if name.startswith("udp:"):
            routes = self._routes["static" if self._static(name) else "dynamic"]
        elif (name, peer[0], peer[1]) in self._elsewhere:
            return None
        else:
            routes = self._routes["stream"]
        if not routes:
            return None
        return routes[opener_index(peer, len(routes))]

    def _answered(self, result: Any, key: Key, waiting: list[Any]) -> Any:
        waiting[1] -= 1
        if waiting[1] == 0 and self._in_flight.get(key) is waiting:
            del self._in_flight[key]
        return result

    # --- serving -----------------------------------------------------------------------

    def serve(self, messages: bytes, channel: RelayChannel | None = None) -> Deferred[bytes]:
        """A batch a worker of another pool relays through this worker's sockets.

        A stream message for a peer whose connection turns out to be held by
        another worker is hinted back on ``channel`` (see the module).
        """

        def send_here(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
            listener = self._held(name)
            if listener is None:  # not held here (released meanwhile): the control process knows
                return self._to_control(name, data, peer)
            holds = getattr(listener, "holds", None)
            if channel is None or holds is None or holds(peer):
                return listener.send(data, peer)
            sending = listener.send(data, peer)  # through the control process

            def sent(result: Any) -> Any:
                if channel is not None and not holds(peer):  # opened by another worker
                    channel.hint(f"{name}\n{peer[0]}\n{peer[1]}".encode())
                return result

            return sending.addBoth(sent)

        return send_relays(send_here, messages)

    def _hinted(self, payload: bytes) -> None:
        """A stream worker says another one holds this peer's connection."""
        try:
            name, host, port = payload.decode("utf-8").split("\n")
            key = (name, host, int(port))
        except ValueError:
            self.log.warn("a direct channel hint that does not read: {hint!r}", hint=payload[:80])
            return
        self._elsewhere.remember(key, True, len(payload))
