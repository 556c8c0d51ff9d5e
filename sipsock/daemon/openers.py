"""Where a socket opens: UDP in a worker pool, every other transport in this process.

The registry (dynamic sockets) and `StaticSockets` (``[core] listen``) are
given the openers here; `worker_pools` builds the pools they use
(DESIGN "Process model"). The socket book tells the workers about every
socket that is not theirs, so that they can send through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from sipsock.apps import Dispatcher
from sipsock.apps.spec import AppSpec
from sipsock.config import Settings
from sipsock.deferreds import settle
from sipsock.incidents import Incidents
from sipsock.seams import ListenError
from sipsock.sockdef import SocketDef
from sipsock.transport import Listener, open_listener
from sipsock.transport.tls import TLSDomains, TLSError
from sipsock.workers import SocketBook, UdpWorkerPool
from sipsock.workers.listener import PooledListener
from sipsock.workers.stream_pool import StreamWorkerPool

InProcessOpener = Callable[[SocketDef, "int | None"], Listener]


def in_process_opener(
    settings: Settings, dispatcher: Dispatcher, tls: TLSDomains, reactor: Any
) -> InProcessOpener:
    """Opens a listener of any transport in this process (raises `ListenError`)."""

    def open_socket(sdef: SocketDef, slot: int | None) -> Listener:
        return open_listener(
            sdef,
            slot,
            dispatcher,
            reactor=reactor,
            idle_timeout=settings.core.stream_idle_timeout,
            max_message_size=settings.core.max_message_size,
            tls=tls,
            websocket=settings.websocket,
            limits=settings.limits,
        )

    return open_socket


@dataclass
class SocketOpeners:
    """Routes each socket to the pool or the process that serves it."""

    open_socket: InProcessOpener
    book: SocketBook
    dynamic_pool: UdpWorkerPool
    static_pool: UdpWorkerPool | None
    #: Every stream socket's pool (None: ``tcp_workers = 0``, streams in this process).
    stream_pool: StreamWorkerPool | None = None

    @property
    def pools(self) -> list[UdpWorkerPool]:
        pools = (self.dynamic_pool, self.static_pool, self.stream_pool)
        return [pool for pool in pools if pool is not None]

    def open_dynamic(self, sdef: SocketDef, slot: int | None) -> Deferred[Listener]:
        """A registry opener: fires with the listener, or fails with `ListenError`."""
        if sdef.proto == "udp":
            return self.dynamic_pool.open(sdef, slot)  # type: ignore[return-value]
        if self.stream_pool is not None:
            return self.stream_pool.open(sdef, slot)  # type: ignore[return-value]
        return maybeDeferred(self.open_socket, sdef, slot).addCallback(self.book.track)

    def open_many(
        self, sockets: Sequence[tuple[SocketDef, int | None]]
    ) -> Deferred[list[Listener | Failure]]:
        """`open_dynamic` for each (definition, slot): one Deferred, each one's result in order.

        The sockets of a pool are opened as one batch (`UdpWorkerPool.open_many`).
        """
        groups: dict[int, tuple[UdpWorkerPool | None, list[int]]] = {}
        for index, (sdef, _) in enumerate(sockets):
            pool = self._pool_of(sdef)
            groups.setdefault(id(pool), (pool, []))[1].append(index)
        waits: list[Deferred[Any]] = []
        for pool, indexes in groups.values():
            items = [sockets[i] for i in indexes]
            if pool is not None:
                waits.append(pool.open_many(items))
            else:
                waits.append(settle([self.open_dynamic(sdef, slot) for sdef, slot in items]))
        results: list[Listener | Failure] = [None] * len(sockets)  # type: ignore[list-item]

        def gathered(outcomes: list[Any]) -> list[Listener | Failure]:
            for (_, indexes), outcome in zip(groups.values(), outcomes, strict=True):
                # A group that failed as a whole: each of its sockets failed so.
                each = [outcome] * len(indexes) if isinstance(outcome, Failure) else outcome
                for index, result in zip(indexes, each, strict=True):
                    results[index] = result
            return results

        return settle(waits).addCallback(gathered)

    def close_many(self, listeners: Sequence[Listener]) -> Deferred[list[Failure | None]]:
        """Stop each of ``listeners``: one Deferred, each one's None or failure, in order.

        The sockets of a pool are released as one batch (`UdpWorkerPool.release_many`),
        the others stopped one by one.
        """
        by_pool: dict[int, tuple[UdpWorkerPool, list[PooledListener]]] = {}
        others: list[Listener] = []
        for listener in listeners:
            if isinstance(listener, PooledListener):
                pool = listener.pool
                by_pool.setdefault(id(pool), (pool, []))[1].append(listener)
            else:
                others.append(listener)
        waits: list[Deferred[Any]] = [pool.release_many(group) for pool, group in by_pool.values()]
        stopping = settle([maybeDeferred(listener.stop) for listener in others])

        def gathered(outcomes: list[Any]) -> list[Failure | None]:
            # A pool's release always ends with its sockets let go: None each.
            failures = {id(lst): result for lst, result in zip(others, outcomes[-1], strict=True)}
            return [failures.get(id(listener)) for listener in listeners]

        return settle([*waits, stopping]).addCallback(gathered)

    def _pool_of(self, sdef: SocketDef) -> UdpWorkerPool | None:
        """The pool that serves ``sdef`` (None: this process)."""
        if sdef.proto == "udp":
            return self.dynamic_pool
        return self.stream_pool

    def open_static(self, sdef: SocketDef) -> Listener:
        """Bind a static socket now (raises `ListenError`)."""
        if sdef.proto == "udp" and self.static_pool is not None:
            return self.static_pool.open_static(sdef)
        if sdef.proto != "udp" and self.stream_pool is not None:
            return self.stream_pool.open_static(sdef)
        listener = self.open_socket(sdef, None)
        self.book.put(listener, static=True)
        return listener


def worker_pools(
    spec: AppSpec, book: SocketBook, incidents: Incidents, reactor: Any
) -> tuple[UdpWorkerPool, UdpWorkerPool | None]:
    """The pool of the dynamic UDP sockets, and one for static UDP sockets if any.

    Workers build their application from ``spec`` (what this process loaded).
    """
    settings = spec.settings
    balance = settings.sockets_mgm.udp_balance
    dynamic = UdpWorkerPool(
        settings.sockets_mgm.processes,
        "dynamic",
        spec,
        balance=balance,
        book=book,
        reactor=reactor,
        command_timeout=settings.core.worker_timeout,
        incidents=incidents,
    )
    if settings.sockets_mgm.auto_scaling_profile is not None:
        dynamic.auto_scale(settings.sockets_mgm.auto_scaling_profile)
    static = None
    if any(sdef.proto == "udp" for sdef in settings.core.listen):
        static = UdpWorkerPool(
            settings.core.udp_workers,
            "static",
            spec,
            balance=balance,
            book=book,
            reactor=reactor,
            command_timeout=settings.core.worker_timeout,
            incidents=incidents,
        )
        if settings.core.udp_auto_scaling_profile is not None:
            static.auto_scale(settings.core.udp_auto_scaling_profile)
    return dynamic, static


def stream_pool(
    spec: AppSpec, book: SocketBook, incidents: Incidents, tls: TLSDomains, reactor: Any
) -> StreamWorkerPool | None:
    """The pool of every stream socket (``[core] tcp_workers``; None when 0)."""
    settings = spec.settings
    if settings.core.tcp_workers < 1:
        return None

    def check(sdef: SocketDef) -> None:
        # A TLS socket no domain serves is refused here, before any worker sees it.
        if sdef.proto in ("tls", "wss"):
            try:
                tls.context_for(sdef)
            except TLSError as error:
                raise ListenError(sdef, error.reason) from None

    pool = StreamWorkerPool(
        settings.core.tcp_workers,
        "stream",
        spec,
        check=check,
        book=book,
        reactor=reactor,
        command_timeout=settings.core.worker_timeout,
        incidents=incidents,
    )
    if settings.core.tcp_auto_scaling_profile is not None:
        pool.auto_scale(settings.core.tcp_auto_scaling_profile)
    return pool
