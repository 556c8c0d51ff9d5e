"""`SocketRegistry`: the service that turns the sockets table into running sockets.

A reload follows DESIGN "Reload, step by step": fetch the rows (a database
error fails the reload and leaves every socket as it was), screen them, resolve
host names, diff against the running set, close what is gone, update in place
what kept its endpoint, open what is new in FIFO slots, and report. Reloads are
serialized; one that arrives during another waits for it.
"""

from __future__ import annotations

import socket as socketlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure as TwistedFailure

from sipsock.db import SocketStore, StoreError
from sipsock.reloadplan import (
    Failure,
    Rejection,
    ReloadReport,
    RowScreen,
    plan_reload,
    screen_conflicts,
)
from sipsock.slots import NoFreeSlotError, SlotAllocator
from sipsock.sockdef import SocketDef
from sipsock.transport import Listener, ListenError

ListenerOpener = Callable[[SocketDef, int | None], "Deferred[Listener]"]
HostResolver = Callable[[str], "Deferred[list[str]]"]

RESOLVE_TIMEOUT = 5.0
T = TypeVar("T")


@dataclass
class SocketEntry:
    """One dynamic socket: its definition, its slot, and its listener or error."""

    sdef: SocketDef
    slot: int
    listener: Listener | None = None
    error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.listener is not None

    def as_mi(self, details: bool = False) -> dict[str, Any]:
        entry = self.sdef.to_mi()
        if self.error is not None:
            entry["error"] = self.error
        if details:
            entry["slot"] = self.slot
            entry["state"] = "open" if self.is_open else "error"
            if self.listener is not None:
                entry["fd"] = self.listener.fileno()
                entry["counters"] = vars(self.listener.counters).copy()
        return entry


def make_thread_resolver(reactor: Any, timeout: float = RESOLVE_TIMEOUT) -> HostResolver:
    """Resolve names with getaddrinfo in the reactor's thread pool, bounded in time."""

    def lookup(host: str) -> list[str]:
        infos = socketlib.getaddrinfo(host, None, type=socketlib.SOCK_DGRAM)
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if address not in addresses:
                addresses.append(address)
        return addresses

    def resolve(host: str) -> Deferred[list[str]]:
        d: Deferred[list[str]] = threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), lookup, host
        )
        return d.addTimeout(timeout, reactor)

    return resolve


class SocketRegistry(Service):
    """Owns the dynamic sockets (and knows the static ones) of one daemon.

    ``opener`` binds and starts a listener for a definition in a slot (its
    Deferred fails with `ListenError` when it cannot); the registry never
    touches sockets itself. It also answers the application's socket look-ups
    (`by_tag`, `by_slot`, `first`).
    """

    log = Logger()

    def __init__(
        self,
        store: SocketStore,
        opener: ListenerOpener,
        *,
        max_sockets: int,
        reactor: Any,
        static: Sequence[Listener] = (),
        resolver: HostResolver | None = None,
        retry_delay: float = 2.0,
        max_retry_delay: float = 30.0,
    ) -> None:
        self._store = store
        self._opener = opener
        self._reactor = reactor
        self._slots = SlotAllocator(max_sockets)
        self._static = list(static)
        self._resolve = resolver or make_thread_resolver(reactor)
        self._entries: dict[SocketDef, SocketEntry] = {}
        self._rows = RowScreen()
        self._lock = DeferredLock()
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._retry_call: IDelayedCall | None = None
        self.reloads = 0
        self.failed_reloads = 0
        self.loaded = False

    # --- service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._initial_load(self._retry_delay)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        return self._lock.run(lambda: Deferred.fromCoroutine(self._close_all()))

    def _initial_load(self, delay: float) -> None:
        def failed(failure: TwistedFailure) -> None:
            if not self.running:
                return
            self.log.error(
                "loading the dynamic sockets failed: {reason}; static sockets serve, "
                "retrying in {delay:g} s",
                reason=failure.getErrorMessage(),
                delay=delay,
            )
            self._retry_call = self._reactor.callLater(
                delay, self._initial_load, min(delay * 2, self._max_retry_delay)
            )

        self.reload().addErrback(failed)

    async def _close_all(self) -> None:
        listeners = [e.listener for e in self._entries.values() if e.listener is not None]
        listeners += self._static
        self._entries.clear()
        self._static = []
        await self._stop_listeners(listeners)

    # --- reload -------------------------------------------------------------------

    def reload(self) -> Deferred[ReloadReport]:
        """Re-read the table and apply it; fires when every change is in effect."""
        return self._lock.run(lambda: Deferred.fromCoroutine(self._reload()))

    async def _reload(self) -> ReloadReport:
        started = self._reactor.seconds()
        try:
            await self._store.check_version()
            rows = await self._store.fetch()
        except StoreError as error:
            self.failed_reloads += 1
            self.log.error(
                "sockets reload failed, running sockets unchanged: {reason}", reason=str(error)
            )
            raise
        report = ReloadReport()
        defs, rejected = self._rows.screen(rows)
        defs, unresolved = await self._resolve_hosts(defs)
        wanted, conflicts = screen_conflicts(defs, [lst.sdef for lst in self._static])
        report.rejected = rejected + unresolved + conflicts
        plan = plan_reload({s: e.is_open for s, e in self._entries.items()}, wanted)

        await self._remove(plan.remove, report)
        for old, new in plan.update:
            self._update(old, new, report)
        await self._open_all(plan.retry, plan.add, report)
        report.kept = [s.socket_text for s in plan.keep]

        # Keep the entries in table order, keyed by the newest definitions.
        self._entries = {s: self._entries[s] for s in wanted if s in self._entries}
        for sdef, entry in self._entries.items():
            entry.sdef = sdef
        for rejection in report.rejected:
            self.log.warn("{reason}", reason=rejection.reason, socket=rejection.socket)
        report.seconds = self._reactor.seconds() - started
        self.reloads += 1
        self.loaded = True
        self.log.info(
            "sockets reloaded in {seconds:.3f} s: {summary}",
            seconds=report.seconds,
            summary=report.summary(),
        )
        return report

    async def _resolve_hosts(
        self, defs: list[SocketDef]
    ) -> tuple[list[SocketDef], list[Rejection]]:
        names = sorted({s.host for s in defs if not _is_ip(s.host)})
        if not names:
            return defs, []
        results = await settle([self._resolve(name) for name in names])
        resolved: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, value in zip(names, results, strict=True):
            if isinstance(value, TwistedFailure):
                errors[name] = _resolve_reason(value)
            elif not value:
                errors[name] = "no address"
            else:
                resolved[name] = value[0]
                if len(value) > 1:
                    self.log.warn(
                        "host name {host} has {count} addresses; using {address}",
                        host=name,
                        count=len(value),
                        address=value[0],
                    )
        kept: list[SocketDef] = []
        rejections: list[Rejection] = []
        for sdef in defs:
            if sdef.host in errors:
                rejections.append(
                    Rejection(
                        sdef.row_id,
                        sdef.text,
                        f"row {sdef.row_id}: socket {sdef.text!r}: cannot resolve host name "
                        f"{sdef.host!r}: {errors[sdef.host]}",
                    )
                )
            elif sdef.host in resolved:
                kept.append(sdef.with_host(resolved[sdef.host]))
            else:
                kept.append(sdef)
        return kept, rejections

    async def _remove(self, defs: Sequence[SocketDef], report: ReloadReport) -> None:
        listeners: list[Listener] = []
        for sdef in defs:
            entry = self._entries.pop(sdef)
            self._slots.release(entry.slot)
            if entry.listener is not None:
                listeners.append(entry.listener)
            report.removed.append(sdef.socket_text)
            self.log.info(
                "socket {socket} slot {slot} removed", socket=sdef.socket_text, slot=entry.slot
            )
        await self._stop_listeners(listeners)

    def _update(self, old: SocketDef, new: SocketDef, report: ReloadReport) -> None:
        entry = self._entries.pop(old)
        assert entry.listener is not None  # plan_reload updates open sockets only
        try:
            entry.listener.update(new)
        except (OSError, ListenError) as error:
            entry.error = f"update failed: {error}"
            report.failed.append(Failure(new.socket_text, entry.error))
            self.log.error(
                "socket {socket} slot {slot} kept its old settings: {reason}",
                socket=new.socket_text,
                slot=entry.slot,
                reason=entry.error,
            )
            self._entries[old] = entry
            return
        entry.sdef = new
        entry.error = None
        self._entries[new] = entry
        report.updated.append(new.socket_text)
        self.log.info(
            "socket {socket} slot {slot} updated in place", socket=new.socket_text, slot=entry.slot
        )

    async def _open_all(
        self, retry: Sequence[SocketDef], add: Sequence[SocketDef], report: ReloadReport
    ) -> None:
        entries = [self._entries[s] for s in retry]
        for sdef in add:
            try:
                slot = self._slots.allocate()
            except NoFreeSlotError as error:
                report.rejected.append(
                    Rejection(
                        sdef.row_id, sdef.text, f"row {sdef.row_id}: socket {sdef.text!r}: {error}"
                    )
                )
                continue
            entry = SocketEntry(sdef, slot)
            self._entries[sdef] = entry
            entries.append(entry)
        results: list[Listener | TwistedFailure] = await settle([self._open(e) for e in entries])
        for entry, value in zip(entries, results, strict=True):
            if not isinstance(value, TwistedFailure):
                entry.listener = value
                entry.error = None
                report.added.append(entry.sdef.socket_text)
                self.log.info(
                    "socket {socket} slot {slot} open",
                    socket=entry.sdef.socket_text,
                    slot=entry.slot,
                )
            else:
                entry.listener = None
                entry.error = _open_reason(value)
                report.failed.append(Failure(entry.sdef.socket_text, entry.error))
                self.log.error(
                    "socket {socket} slot {slot} failed: {reason}",
                    socket=entry.sdef.socket_text,
                    slot=entry.slot,
                    reason=entry.error,
                )

    def _open(self, entry: SocketEntry) -> Deferred[Listener]:
        try:
            return self._opener(entry.sdef, entry.slot)
        except Exception:
            return defer.fail()

    async def _stop_listeners(self, listeners: Sequence[Listener]) -> None:
        results = await settle([defer.maybeDeferred(lst.stop) for lst in listeners])
        for lst, value in zip(listeners, results, strict=True):
            if isinstance(value, TwistedFailure):
                self.log.error(
                    "socket {socket} did not close cleanly: {reason}",
                    socket=lst.sdef.socket_text,
                    reason=value.getErrorMessage(),
                )

    # --- queries --------------------------------------------------------------------

    def list_sockets(self, details: bool = False) -> list[dict[str, Any]]:
        """The ``sockets_list`` answer: dynamic sockets in table order."""
        return [entry.as_mi(details) for entry in self._entries.values()]

    @property
    def entries(self) -> list[SocketEntry]:
        return list(self._entries.values())

    @property
    def static_listeners(self) -> list[Listener]:
        return list(self._static)

    def _listeners(self) -> list[Listener]:
        dynamic = [e.listener for e in self._entries.values() if e.listener is not None]
        return self._static + dynamic

    def by_tag(self, tag: str) -> Listener | None:
        """The first open socket with this tag (static sockets first)."""
        return next((lst for lst in self._listeners() if lst.sdef.tag == tag), None)

    def by_slot(self, slot: int) -> Listener | None:
        """The open dynamic socket in this slot."""
        return next(
            (e.listener for e in self._entries.values() if e.slot == slot and e.listener),
            None,
        )

    def first(self, proto: str) -> Listener | None:
        """The first open socket of a protocol (static sockets first)."""
        return next((lst for lst in self._listeners() if lst.sdef.proto == proto), None)


async def settle(waits: Sequence[Deferred[T]]) -> list[T | TwistedFailure]:
    """Wait for every Deferred; each result is its value or its Failure."""
    results: list[T | TwistedFailure] = []
    for wait in waits:
        try:
            results.append(await wait)
        except Exception:
            results.append(TwistedFailure())  # type: ignore[no-untyped-call]
    return results


def _is_ip(host: str) -> bool:
    return ":" in host or all(part.isdigit() for part in host.split("."))


def _resolve_reason(failure: TwistedFailure) -> str:
    error = failure.value
    if isinstance(error, defer.TimeoutError):
        return f"no answer within {RESOLVE_TIMEOUT:g} s"
    if isinstance(error, socketlib.gaierror) and len(error.args) > 1:
        return str(error.args[1])
    return str(error)


def _open_reason(failure: TwistedFailure) -> str:
    error = failure.value
    if isinstance(error, ListenError):
        return error.reason
    return str(error) or type(error).__name__
