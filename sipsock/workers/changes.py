"""`ChangeQueue`: a pool's socket changes of one reactor turn, sent together in one flush.

A reload changes hundreds of sockets in one turn; each worker should get one
batch command per kind of change, not a round trip per socket. The queue
has one typed lane per kind (adopt, update, release, announce, withdraw);
each change gets its own Deferred, fired with its own result when its batch
is done, or a group of changes queued at once (`adopt_many`, `announce_many`)
gets one Deferred, fired with the list of their results (a reload opens
hundreds of sockets: a Deferred each cost more than the batch itself).
`flush` runs the lanes in the order their first change was queued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from sipsock.workers.directory import BookEntry
from sipsock.workers.listener import PooledListener

T = TypeVar("T")
R = TypeVar("R")


class ChangeHandler(Protocol):
    """What carries out each batch (the pool): one result per item, or None for all."""

    async def adopt_all(self, listeners: list[PooledListener]) -> list[PooledListener | Failure]:
        """Every live worker adopts ``listeners``; each one's listener or failure."""

    async def update_all(self, listeners: list[PooledListener]) -> None:
        """Every live worker applies the listeners' new definitions."""

    async def release_all(self, listeners: list[PooledListener]) -> None:
        """Every live worker closes ``listeners``."""

    async def announce_all(self, entries: list[BookEntry]) -> None:
        """Every live worker learns ``entries`` (sockets of the daemon it does not hold)."""

    async def withdraw_all(self, names: list[str]) -> None:
        """Every live worker forgets the sockets ``names``."""


@dataclass
class _Lane(Generic[T, R]):
    """The queued changes of one kind and who waits for each."""

    run: Callable[[list[T]], Awaitable[list[R | Failure]]]
    items: list[T] = field(default_factory=list)
    #: Who waits, in queue order: one item's Deferred (size None) or a group's (size n).
    waiters: list[tuple[Deferred[Any], int | None]] = field(default_factory=list)

    def add(self, item: T) -> Deferred[R]:
        done: Deferred[R] = Deferred()
        self.items.append(item)
        self.waiters.append((done, None))
        return done

    def add_many(self, items: list[T]) -> Deferred[list[R | Failure]]:
        """Queue ``items`` with one Deferred, fired with each one's result or `Failure`."""
        done: Deferred[list[R | Failure]] = Deferred()
        self.items.extend(items)
        self.waiters.append((done, len(items)))
        return done

    def send(self) -> None:
        """Run the batch of everything queued; each waiter gets its own result(s)."""
        items, waiters = self.items, self.waiters
        self.items, self.waiters = [], []

        def fire(results: list[R | Failure]) -> None:
            if len(results) != len(items):
                raise ValueError(f"{len(results)} results for {len(items)} changes")
            start = 0
            for waiter, size in waiters:
                if size is not None:
                    waiter.callback(results[start : start + size])
                    start += size
                    continue
                result = results[start]
                start += 1
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        def fail(failure: Failure) -> None:
            for waiter, size in waiters:
                if size is None:
                    waiter.errback(failure)
                else:
                    waiter.callback([failure] * size)

        async def running() -> list[R | Failure]:
            return await self.run(items)

        Deferred.fromCoroutine(running()).addCallbacks(fire, fail)


def _each_none(
    run: Callable[[list[T]], Awaitable[None]],
) -> Callable[[list[T]], Awaitable[list[Failure | None]]]:
    """A batch whose items all succeed together (or fail together)."""

    async def batch(items: list[T]) -> list[Failure | None]:
        await run(items)
        return [None] * len(items)

    return batch


class ChangeQueue:
    """Socket changes queued in one reactor turn, flushed together (see the module).

    ``live`` says whether any worker is running: with none there is nothing
    to batch for, and a change is carried out at once.
    """

    def __init__(self, handler: ChangeHandler, *, reactor: Any, live: Callable[[], bool]) -> None:
        self.reactor = reactor
        self._live = live
        self._adopt: _Lane[PooledListener, PooledListener] = _Lane(handler.adopt_all)
        self._update: _Lane[PooledListener, None] = _Lane(_each_none(handler.update_all))
        self._release: _Lane[PooledListener, None] = _Lane(_each_none(handler.release_all))
        self._announce: _Lane[BookEntry, None] = _Lane(_each_none(handler.announce_all))
        self._withdraw: _Lane[str, None] = _Lane(_each_none(handler.withdraw_all))
        #: Lanes with queued changes, in the order their first change came.
        self._order: list[_Lane[Any, Any]] = []
        self._flush_call: IDelayedCall | None = None

    @property
    def pending(self) -> bool:
        """Whether changes wait for the next flush."""
        return bool(self._order)

    def adopt(self, listener: PooledListener) -> Deferred[PooledListener]:
        """Have every live worker adopt ``listener``; fails with `ListenError` if refused."""
        return self._queue(self._adopt, listener)

    def adopt_many(
        self, listeners: list[PooledListener]
    ) -> Deferred[list[PooledListener | Failure]]:
        """`adopt` for each of ``listeners``, with one Deferred: each one's listener or failure."""
        return self._queue_many(self._adopt, listeners)

    def update(self, listener: PooledListener) -> Deferred[None]:
        """Have every live worker apply ``listener``'s new definition."""
        return self._queue(self._update, listener)

    def release(self, listener: PooledListener) -> Deferred[None]:
        """Have every live worker close ``listener``."""
        return self._queue(self._release, listener)

    def announce(self, entry: BookEntry) -> Deferred[None]:
        """Tell every live worker about a socket of the daemon it does not hold."""
        return self._queue(self._announce, entry)

    def announce_many(self, entries: list[BookEntry]) -> Deferred[list[Failure | None]]:
        """`announce` for each of ``entries``, with one Deferred."""
        return self._queue_many(self._announce, entries)

    def withdraw(self, name: str) -> Deferred[None]:
        """Tell every live worker that the socket ``name`` is gone."""
        return self._queue(self._withdraw, name)

    def withdraw_many(self, names: list[str]) -> Deferred[list[Failure | None]]:
        """`withdraw` for each of ``names``, with one Deferred."""
        return self._queue_many(self._withdraw, names)

    def release_many(self, listeners: list[PooledListener]) -> Deferred[list[Failure | None]]:
        """`release` for each of ``listeners``, with one Deferred: each one's None or failure."""
        return self._queue_many(self._release, listeners)

    def _queue(self, lane: _Lane[T, R], item: T) -> Deferred[R]:
        if not lane.items:
            self._order.append(lane)
        done = lane.add(item)
        self._flush_soon()
        return done

    def _queue_many(self, lane: _Lane[T, R], items: list[T]) -> Deferred[list[R | Failure]]:
        if not items:
            return succeed([])
        if not lane.items:
            self._order.append(lane)
        done = lane.add_many(items)
        self._flush_soon()
        return done

    def _flush_soon(self) -> None:
        """Flush at the end of this turn (at once when no worker runs)."""
        if self._flush_call is not None and self._flush_call.active():
            return
        if self._live():
            self._flush_call = self.reactor.callLater(0, self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        """Send every queued change: the changes of one kind form one batch.

        Batches go out in the order their kinds first appear, each in queue
        order. Changes of different kinds queued in one turn concern different
        sockets (a socket is adopted and announced together; it is withdrawn
        a turn before it is released), so regrouping them changes nothing.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        order, self._order = self._order, []
        for lane in order:
            lane.send()
