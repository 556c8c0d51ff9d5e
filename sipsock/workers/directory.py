"""Which sockets a worker's application can send through, on both sides of the pool.

A worker holds only its pool's UDP sockets, but its application chooses
outgoing sockets among all of the daemon's (by tag, slot or protocol, as in
the control process). The control process keeps a `SocketBook`: every open
socket by name (``proto:host:port``), static ones first. Each pool subscribes
to it and announces to its workers every entry but its own sockets, which
they know from their adoption (`AnnounceMany` / `WithdrawMany`).

In a worker, `WorkerDirectory` answers the application's look-ups in the
book's order: a socket the worker holds is used directly; any other is a
`RemoteSocket`, whose ``send`` relays it to the process holding it
(`sipsock.workers.direct`: a worker of the other pool, or the control process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sipsock.deferreds import wait_all
from sipsock.seams import Listener, SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.socketindex import Match, first_in_order, has_tag, in_order, in_slot, of_proto

#: Look-up answers a `WorkerDirectory` remembers between two changes, at most.
FOUND_MAX = 256

#: How a worker sends through a socket it does not hold: (socket name, data, peer).
Relay = Callable[[str, bytes, tuple[str, int]], "Deferred[None]"]


@dataclass(frozen=True)
class BookEntry:
    """One socket of the daemon as workers see it."""

    sdef: SocketDef
    slot: int | None
    static: bool

    @property
    def name(self) -> str:
        """The daemon-wide name of the socket: ``proto:host:port``."""
        return self.sdef.socket_text


class BookSubscriber(Protocol):
    """Something that passes book changes on (a worker pool)."""

    def announce(self, entry: BookEntry) -> Deferred[None]:
        """A socket was opened or updated; fires when every worker knows."""

    def announce_many(self, entries: list[BookEntry]) -> Deferred[Any]:
        """`announce` for each of ``entries``; fires when every worker knows them all."""

    def withdraw(self, name: str) -> Deferred[None]:
        """A socket is closing; fires when every worker knows."""

    def withdraw_many(self, names: list[str]) -> Deferred[Any]:
        """`withdraw` for each of ``names``; fires when every worker knows them all."""


class SocketBook:
    """The control process's list of every open socket, for the workers' applications.

    Pools put their own sockets here; `track` wraps the daemon's other
    listeners (stream sockets) so that their updates and closes are
    announced too. `find` resolves a name for `SendThroughSocket`.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, Listener] = {}
        self._static: dict[str, BookEntry] = {}
        self._dynamic: dict[str, BookEntry] = {}
        self._subscribers: list[BookSubscriber] = []

    def subscribe(self, subscriber: BookSubscriber) -> None:
        """Pass every later change to ``subscriber``."""
        self._subscribers.append(subscriber)

    def entries(self) -> list[BookEntry]:
        """Every socket: static ones first, then dynamic ones in the order they opened."""
        return [*self._static.values(), *self._dynamic.values()]

    def find(self, name: str) -> Listener | None:
        """The open listener named ``name`` (``proto:host:port``), or None."""
        return self._listeners.get(name)

    def put(self, listener: Listener, *, static: bool = False) -> Deferred[None]:
        """Record (or refresh) ``listener``; fires when every subscriber passed it on."""
        entry = BookEntry(listener.sdef, listener.slot, static)
        self._listeners[entry.name] = listener
        (self._static if static else self._dynamic)[entry.name] = entry
        return wait_all([s.announce(entry) for s in self._subscribers])

    def put_many(self, listeners: list[Listener], *, static: bool = False) -> Deferred[None]:
        """`put` for each of ``listeners`` (in order), with one wait for them all."""
        entries = [BookEntry(listener.sdef, listener.slot, static) for listener in listeners]
        recorded = self._listeners
        book = self._static if static else self._dynamic
        for entry, listener in zip(entries, listeners, strict=True):
            name = entry.sdef.socket_text
            recorded[name] = listener
            book[name] = entry
        return wait_all([s.announce_many(entries) for s in self._subscribers])

    def drop(self, listener: Listener) -> Deferred[None]:
        """Forget ``listener`` (when it is the one recorded under its name)."""
        name = listener.sdef.socket_text
        if self._listeners.get(name) is not listener:
            return defer.succeed(None)
        del self._listeners[name]
        self._static.pop(name, None)
        self._dynamic.pop(name, None)
        return wait_all([s.withdraw(name) for s in self._subscribers])

    def drop_many(self, listeners: Sequence[Listener]) -> Deferred[None]:
        """`drop` for each of ``listeners``, with one wait for them all."""
        recorded = self._listeners
        names: list[str] = []
        for listener in listeners:
            name = listener.sdef.socket_text
            if recorded.get(name) is not listener:
                continue
            del recorded[name]
            self._static.pop(name, None)
            self._dynamic.pop(name, None)
            names.append(name)
        if not names:
            return defer.succeed(None)
        return wait_all([s.withdraw_many(names) for s in self._subscribers])

    def track(self, listener: Listener, *, static: bool = False) -> Deferred[Listener]:
        """Record a listener the pools do not own; its updates and stop are announced.

        Fires with the listener to hand to the registry (a `TrackedListener`)
        once every worker knows the socket.
        """
        tracked: Listener = TrackedListener(listener, self, static=static)

        def announced(_: None) -> Listener:
            return tracked

        return self.put(tracked, static=static).addCallback(announced)

    def send(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send through the socket named ``name``; fails with LookupError when none is open."""
        listener = self.find(name)
        if listener is None:
            return defer.fail(LookupError(f"socket {name} is not open"))
        return listener.send(data, peer)


class TrackedListener:
    """A listener whose updates and closing are announced to the workers (a `Listener`)."""

    def __init__(self, inner: Listener, book: SocketBook, *, static: bool = False) -> None:
        self.inner = inner
        self._book = book
        self._static = static

    @property
    def sdef(self) -> SocketDef:
        return self.inner.sdef

    @sdef.setter
    def sdef(self, sdef: SocketDef) -> None:
        self.inner.sdef = sdef

    @property
    def slot(self) -> int | None:
        return self.inner.slot

    @slot.setter
    def slot(self, slot: int | None) -> None:
        self.inner.slot = slot

    @property
    def counters(self) -> SocketCounters:
        return self.inner.counters

    @counters.setter
    def counters(self, counters: SocketCounters) -> None:
        self.inner.counters = counters

    def update(self, sdef: SocketDef) -> None:
        """Update the listener, then announce its new definition."""
        self.inner.update(sdef)
        self._book.put(self, static=self._static)

    def stop(self) -> Deferred[None]:
        """Withdraw the socket from the workers, then close it."""
        withdrawn = self._book.drop(self)
        return withdrawn.addCallback(lambda _: self.inner.stop())

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        return self.inner.send(data, peer)

    def fileno(self) -> int:
        return self.inner.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RemoteSocket:
    """A socket of the daemon that this worker does not hold (a `Listener`).

    ``send`` relays it to the process holding it; ``update`` and ``stop`` are
    not this process's business and raise.
    """

    def __init__(self, entry: BookEntry, relay: Relay, counters: SocketCounters) -> None:
        self.sdef = entry.sdef
        self.slot = entry.slot
        self.counters = counters
        self._relay = relay

    def update(self, sdef: SocketDef) -> None:
        raise ValueError(f"{self.sdef.socket_text}: not held by this process")

    def stop(self) -> Deferred[None]:
        return defer.fail(ValueError(f"{self.sdef.socket_text}: not held by this process"))

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Have the process holding this socket send ``data`` to ``peer`` from it."""
        counters = self.counters

        def sent(_: None) -> None:
            counters.count_out(data)

        def failed(failure: Any) -> Any:
            counters.drops += 1
            return failure

        return self._relay(self.sdef.socket_text, data, peer).addCallbacks(sent, failed)

    def fileno(self) -> int:
        """-1: the descriptor lives in another process."""
        return -1


class WorkerDirectory:
    """The application's `SocketDirectory` in a worker: every socket of the daemon.

    Look-ups follow the control process's order (`sipsock.socketindex`:
    static sockets first, in the book's order, then dynamic ones in table
    order); a socket held here answers with its local listener, any other
    with a `RemoteSocket`.
    """

    log = Logger()

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self._static: dict[str, BookEntry] = {}
        self._dynamic: dict[str, BookEntry] = {}
        self._local: dict[str, Listener] = {}
        self._relayed: dict[str, SocketCounters] = {}
        #: Answers of the look-ups since the last change (a proxy asks the same
        #: few on every message); emptied by every change.
        self._found: dict[tuple[str, str | int], Listener | None] = {}

    # --- changes ---------------------------------------------------------------

    def announce(self, entry: BookEntry) -> None:
        """Learn (or refresh) a socket of the daemon."""
        self._found.clear()
        other = self._dynamic if entry.static else self._static
        other.pop(entry.name, None)
        (self._static if entry.static else self._dynamic)[entry.name] = entry

    def withdraw(self, name: str) -> None:
        """Forget a socket of the daemon."""
        self._found.clear()
        self._static.pop(name, None)
        self._dynamic.pop(name, None)
        self._relayed.pop(name, None)

    def hold(self, listener: Listener, *, static: bool = False) -> None:
        """A socket this worker reads (its pool never announces it here).

        Recorded once, where the book has it (static sockets first, then in
        the order opened); holding it again (an update) keeps its place.
        """
        name = listener.sdef.socket_text
        self._found.clear()
        self._local[name] = listener
        if name not in self._static and name not in self._dynamic:
            self.announce(BookEntry(listener.sdef, listener.slot, static))

    def let_go(self, listener: Listener) -> None:
        """This worker no longer reads ``listener``: forgotten."""
        name = listener.sdef.socket_text
        self._found.clear()
        if self._local.get(name) is listener:
            del self._local[name]
            self.withdraw(name)

    def held(self, name: str) -> Listener | None:
        """The socket named ``name`` when this worker holds it."""
        return self._local.get(name)

    def is_static(self, name: str) -> bool:
        """Whether ``name`` is one of the daemon's static sockets (``[core] listen``)."""
        return name in self._static

    # --- SocketDirectory ---------------------------------------------------------

    def by_tag(self, tag: str) -> Listener | None:
        """The first socket with this tag, in the control process's order."""
        key = ("tag", tag)
        if key in self._found:
            return self._found[key]
        return self._remember(key, self._first(has_tag(tag)))

    def by_slot(self, slot: int) -> Listener | None:
        """The dynamic socket in this slot."""
        key = ("slot", slot)
        if key in self._found:
            return self._found[key]
        return self._remember(key, self._first(in_slot(slot)))

    def first(self, proto: str) -> Listener | None:
        """The first socket of this protocol, in the control process's order."""
        key = ("proto", proto)
        if key in self._found:
            return self._found[key]
        return self._remember(key, self._first(of_proto(proto)))

    def _remember(self, key: tuple[str, str | int], found: Listener | None) -> Listener | None:
        # Keys come from the application (a tag or slot a peer's message
        # named): bounded like every memo of what peers send.
        if len(self._found) >= FOUND_MAX:
            self._found.clear()
        self._found[key] = found
        return found

    def names(self) -> list[str]:
        """Every socket name known here, in look-up order."""
        return [item.sdef.socket_text for item in in_order(*self._known())]

    def _known(self) -> tuple[list[Listener | BookEntry], list[Listener | BookEntry]]:
        """Static and dynamic sockets: held ones as their listener, others as book entries.

        Static sockets in the book's order; one held here whose announcement
        has not arrived yet comes after the announced ones.
        """
        local = self._local
        static: list[Listener | BookEntry] = [local.get(n, e) for n, e in self._static.items()]
        dynamic: list[Listener | BookEntry] = [local.get(n, e) for n, e in self._dynamic.items()]
        for name, listener in local.items():
            if name not in self._static and name not in self._dynamic:
                (static if listener.slot is None else dynamic).append(listener)
        return static, dynamic

    def _first(self, match: Match) -> Listener | None:
        found = first_in_order(*self._known(), match)
        if isinstance(found, BookEntry):
            return self._remote(found)
        return found

    def _remote(self, entry: BookEntry) -> RemoteSocket:
        counters = self._relayed.setdefault(entry.name, SocketCounters())
        return RemoteSocket(entry, self._relay, counters)
