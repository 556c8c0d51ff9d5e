"""`SocketRegistry`: the service that turns the sockets table into running sockets.

A reload follows DESIGN "Reload, step by step": fetch the rows (a database
error fails the reload and leaves every socket as it was), screen them, resolve
host names, diff against the running set, close what is gone, update in place
what kept its endpoint, open what is new in FIFO slots, and report. Reloads are
serialized; one that arrives during another waits for it. A reload that reads
the very rows of the previous one, when that one left nothing to retry (no
failed socket, no host name to resolve again), reports everything kept at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure as TwistedFailure

from sipsock.backoff import retry_delay
from sipsock.db import SocketRow, SocketStore, StoreError
from sipsock.deferreds import settle
from sipsock.gcpause import collection_paused
from sipsock.histogram import RELOAD_SECONDS_BUCKETS, Histogram
from sipsock.incidents import Incidents
from sipsock.reloadhosts import HostResolver, ReloadHosts, make_thread_resolver
from sipsock.reloadplan import (
    Failure,
    Rejection,
    ReloadReport,
    RowScreen,
    changed_places,
    host_names,
    kept_at,
    plan_reload,
    screen_conflicts,
)
from sipsock.repeats import ChangedOnly
from sipsock.seams import Listener, ListenError
from sipsock.slots import NoFreeSlotError, SlotAllocator
from sipsock.sockdef import SocketDef
from sipsock.socketindex import first_in_order, has_tag, of_proto

ListenerOpener = Callable[[SocketDef, int | None], "Deferred[Listener]"]
#: Opens many (definition, slot) at once: each one's listener or `Failure`, in order.
BatchOpener = Callable[
    [Sequence[tuple[SocketDef, int | None]]], "Deferred[list[Listener | TwistedFailure]]"
]
#: Stops many listeners at once: each one's None or `Failure`, in order.
BatchCloser = Callable[[Sequence[Listener]], "Deferred[list[TwistedFailure | None]]"]
_listener_of = attrgetter("listener")
_socket_text = attrgetter("socket_text")
#: Up to this many sockets opened (removed, updated) by a reload get a log line each.
LOG_EACH = 10


@dataclass
class SocketEntry:
    """One dynamic socket: its definition, its slot, and its listener or error."""

    sdef: SocketDef
    slot: int
    listener: Listener | None = None
    error: str | None = None
    #: Failed attempts to open it in a row (by reloads and retries).
    attempts: int = 0
    #: Seconds to the next retry while it fails to open (None: no retry planned).
    next_retry: float | None = None

    @property
    def is_open(self) -> bool:
        return self.listener is not None

    def as_mi(self, details: bool = False) -> dict[str, Any]:
        entry = self.sdef.to_mi()
        if self.error is not None:
            entry["error"] = self.error
            if self.next_retry is not None:
                entry["error"] += (
                    f" ({self.attempts} attempt(s); next retry in {self.next_retry:g} s)"
                )
        if details:
            entry["slot"] = self.slot
            entry["state"] = "open" if self.is_open else "error"
            if self.listener is not None:
                entry["fd"] = self.listener.fileno()
                entry["counters"] = vars(self.listener.counters).copy()
        return entry


@dataclass(frozen=True)
class _Settled:
    """The rows of the last reload that left nothing to retry, and what it kept/rejected."""

    rows: list[SocketRow]
    kept: list[str]
    rejected: list[Rejection]


class SocketRegistry(Service):
    """Owns the dynamic sockets (and knows the static ones) of one daemon.

    ``opener`` binds and starts a listener for a definition in a slot (its
    Deferred fails with `ListenError` when it cannot); ``open_many``, when
    given, does the same for many sockets with one Deferred (a reload opens
    hundreds), and ``close_many`` stops many (else each listener's ``stop``).
    The registry never touches sockets itself. It also answers the
    application's socket look-ups (`by_tag`, `by_slot`, `first`).

    A dynamic socket that fails to open (port in use, address not on this
    host yet) is tried again by itself, ``retry_delay`` seconds later, then
    twice as long each time up to ``max_retry_delay``; a reload tries it too.
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
        incidents: Incidents | None = None,
        open_many: BatchOpener | None = None,
        close_many: BatchCloser | None = None,
    ) -> None:
        self._store = store
        self._opener = opener
        self._open_many = open_many
        self._close_many = close_many
        self._reactor = reactor
        self._slots = SlotAllocator(max_sockets)
        self._static = list(static)
        self._hosts = ReloadHosts(resolver or make_thread_resolver(reactor))
        self._entries: dict[SocketDef, SocketEntry] = {}
        self._rows = RowScreen(frozen=(SocketRow,))
        self._settled: _Settled | None = None
        self._lock = DeferredLock()
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._retry_call: IDelayedCall | None = None
        self._reopen_call: IDelayedCall | None = None
        #: Whether some entry shows a planned retry (``next_retry``) to clear.
        self._retries_shown = False
        #: Process faults (late workers) recorded meanwhile go into each reload's report.
        self._incidents = incidents if incidents is not None else Incidents()
        self.reloads = 0
        self.failed_reloads = 0
        self.loaded = False
        #: The report of the last reload that completed (rejected rows, failed sockets).
        self.last_report: ReloadReport | None = None
        #: Durations of the completed reloads.
        self.reload_seconds = Histogram(RELOAD_SECONDS_BUCKETS)
        # What a reload logs again only when it changed: rejected rows, sockets that
        # fail to open or update (retried at every reload); host names: ReloadHosts.
        self._rejections_logged: ChangedOnly[tuple[int | None, str]] = ChangedOnly()
        self._failures_logged: ChangedOnly[str] = ChangedOnly()

    # --- service ------------------------------------------------------------------

    def use_static(self, listeners: Sequence[Listener]) -> None:
        """The static sockets, once bound: looked up and screened here, closed by their owner."""
        self._static = list(listeners)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._initial_load(self._retry_delay)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for call in (self._retry_call, self._reopen_call):
            if call is not None and call.active():
                call.cancel()
        self._retry_call = self._reopen_call = None
        return self._lock.run(lambda: Deferred.fromCoroutine(self._close_all()))

    def _initial_load(self, delay: float, attempt: int = 1) -> None:
        def loaded(report: ReloadReport) -> None:
            if attempt > 1:
                self.log.info(
                    "dynamic sockets loaded at attempt {attempt}, after {failures} failed "
                    "load(s): {summary}",
                    attempt=attempt,
                    failures=attempt - 1,
                    summary=report.summary(),
                )

        def failed(failure: TwistedFailure) -> None:
            if not self.running:
                return
            self.log.error(
                "loading the dynamic sockets failed (attempt {attempt}): {reason}; "
                "static sockets serve, retrying in {delay:g} s",
                attempt=attempt,
                reason=failure.getErrorMessage(),
                delay=delay,
            )
            self._retry_call = self._reactor.callLater(
                delay, self._initial_load, min(delay * 2, self._max_retry_delay), attempt + 1
            )

        self.reload().addCallbacks(loaded, failed)

    async def _close_all(self) -> None:
        """Close the dynamic sockets; the static ones are their owner's to close."""
        listeners = [e.listener for e in self._entries.values() if e.listener is not None]
        self._entries.clear()
        self._settled = None
        self._static = []
        await self._stop_listeners(listeners)

    # --- reload -------------------------------------------------------------------

    def reload(self) -> Deferred[ReloadReport]:
        """Re-read the table and apply it; fires when every change is in effect."""
        return self._lock.run(lambda: Deferred.fromCoroutine(self._reload()))

    async def _reload(self) -> ReloadReport:
        started = self._reactor.seconds()
        mark = self._incidents.mark()
        try:
            rows = await self._store.read()
        except StoreError as error:
            self.failed_reloads += 1
            self.log.error(
                "sockets reload failed, running sockets unchanged: {reason}", reason=str(error)
            )
            raise
        settled, self._settled = self._settled, None
        if settled is not None and rows == settled.rows:
            # The very rows of a reload that left nothing to retry: nothing to do.
            self._settled = settled
            report = ReloadReport(kept=list(settled.kept), rejected=list(settled.rejected))
            return self._finish(report, started, mark)
        report = ReloadReport()
        before = (list(self._entries), list(self._entries.values()))
        defs, rejected = self._rows.screen(rows)
        names = host_names(defs)
        defs, unresolved = await self._hosts.resolve(defs, names, self._entries)
        wanted, conflicts = screen_conflicts(defs, [lst.sdef for lst in self._static])
        report.rejected = rejected + unresolved + conflicts
        plan = plan_reload(self._running(), wanted)

        await self._remove(plan.remove, report)
        not_updated = await self._update_all(plan.update, report)
        await self._open_all(plan.retry, plan.add, report)
        report.kept = list(map(_socket_text, plan.keep))
        self._entries = _in_table_order(self._entries, wanted, not_updated, before)
        failing = self._plan_reopen()
        if not names and not report.failed and not failing:
            # Host names may resolve otherwise next time, and failures are retried.
            self._settled = _Settled(
                rows, list(map(_socket_text, self._entries)), list(report.rejected)
            )
        return self._finish(report, started, mark)

    def _running(self) -> dict[SocketDef, bool]:
        """Each dynamic socket's definition, and whether it is open (C-level when all are)."""
        entries = self._entries
        if all(map(is_not, map(_listener_of, entries.values()), repeat(None))):
            return dict.fromkeys(entries, True)  # reuses the dict's stored hashes
        return {s: e.listener is not None for s, e in entries.items()}

    def _finish(self, report: ReloadReport, started: float, mark: int) -> ReloadReport:
        report.workers = self._incidents.since(mark)
        repeats = self._log_rejections(report.rejected)
        self._failures_logged.end_round()
        self._hosts.end_round()
        report.seconds = self._reactor.seconds() - started
        self.reloads += 1
        self.loaded = True
        self.last_report = report
        self.reload_seconds.observe(report.seconds)
        # A reload that changed nothing and has nothing new to say is a debug line:
        # at info, the line cost as much as the rest of a no-change reload.
        quiet = self.reloads > 1 and not (
            report.changed or report.failed or report.workers or len(report.rejected) > repeats
        )
        (self.log.debug if quiet else self.log.info)(
            "sockets reloaded in {seconds:.3f} s: {summary}{repeats_text}",
            seconds=report.seconds,
            summary=report.summary(),
            repeats=repeats,
            repeats_text=f" ({repeats} rejected as before, not logged again)" if repeats else "",
        )
        return report

    def _log_rejections(self, rejected: Sequence[Rejection]) -> int:
        """Log each rejected row whose reason is new or changed; the number left unlogged."""
        by_key = {(r.row_id, r.socket): r for r in rejected}
        fresh = self._rejections_logged.news((key, r.reason) for key, r in by_key.items())
        for key in fresh:
            rejection = by_key[key]
            self.log.warn(
                "{reason}", reason=rejection.reason, socket=rejection.socket, row=rejection.row_id
            )
        return len(rejected) - len(fresh)

    def _log_sockets(self, what: str, entries: Sequence[SocketEntry]) -> None:
        """``socket S slot N <what>`` for each of a few sockets; one line for many.

        A line per socket cost more than the rest of a reload of hundreds.
        """
        if len(entries) <= LOG_EACH:
            for entry in entries:
                self.log.info(
                    "socket {socket} slot {slot} " + what,
                    socket=entry.sdef.socket_text,
                    slot=entry.slot,
                )
            return
        self.log.info(
            "{count} sockets " + what + ": {listing}",
            count=len(entries),
            listing=", ".join(f"{e.sdef.socket_text} slot {e.slot}" for e in entries),
            sockets=[e.sdef.socket_text for e in entries],
        )

    async def _remove(self, defs: Sequence[SocketDef], report: ReloadReport) -> None:
        listeners: list[Listener] = []
        removed: list[SocketEntry] = []
        for sdef in defs:
            entry = self._entries.pop(sdef)
            self._slots.release(entry.slot)
            if entry.listener is not None:
                listeners.append(entry.listener)
            report.removed.append(sdef.socket_text)
            removed.append(entry)
        self._log_sockets("removed", removed)
        await self._stop_listeners(listeners)

    async def _update_all(
        self, pairs: Sequence[tuple[SocketDef, SocketDef]], report: ReloadReport
    ) -> dict[SocketDef, SocketDef]:
        """Update sockets in place, all at once; fires when every process applied them.

        Returns the new definitions that could not be applied, each with the
        old definition its socket keeps.
        """
        not_updated: dict[SocketDef, SocketDef] = {}
        entries = [self._entries.pop(old) for old, _ in pairs]
        waits: list[Deferred[None]] = []
        for entry, (_, new) in zip(entries, pairs, strict=True):
            assert entry.listener is not None  # plan_reload updates open sockets only
            waits.append(_start_update(entry.listener, new))
        results = await settle(waits)
        updated: list[SocketEntry] = []
        for entry, (old, new), result in zip(entries, pairs, results, strict=True):
            if isinstance(result, TwistedFailure):
                entry.error = f"update failed: {_open_reason(result)}"
                report.failed.append(Failure(new.socket_text, entry.error))
                if self._failures_logged.seen(new.socket_text, entry.error):
                    self.log.error(
                        "socket {socket} slot {slot} kept its old settings: {reason}",
                        socket=new.socket_text,
                        slot=entry.slot,
                        reason=entry.error,
                    )
                self._entries[old] = entry
                not_updated[new] = old
                continue
            entry.sdef = new
            entry.error = None
            self._entries[new] = entry
            report.updated.append(new.socket_text)
            updated.append(entry)
        self._log_sockets("updated in place", updated)
        return not_updated

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
        results = await self._open_entries(entries)
        opened: list[SocketEntry] = []
        for entry, value in zip(entries, results, strict=True):
            if not isinstance(value, TwistedFailure):
                entry.listener = value
                entry.error = None
                entry.attempts = 0
                report.added.append(entry.sdef.socket_text)
                opened.append(entry)
            else:
                entry.listener = None
                entry.attempts += 1
                entry.error = _open_reason(value)
                report.failed.append(Failure(entry.sdef.socket_text, entry.error))
                if self._failures_logged.seen(entry.sdef.socket_text, entry.error):
                    self.log.error(
                        "socket {socket} slot {slot} failed: {reason}",
                        socket=entry.sdef.socket_text,
                        slot=entry.slot,
                        reason=entry.error,
                    )
        self._log_sockets("open", opened)

    def _plan_reopen(self) -> int:
        """Plan the next attempt at the sockets that failed to open (if any); how many."""
        if self._reopen_call is not None and self._reopen_call.active():
            self._reopen_call.cancel()
        self._reopen_call = None
        entries = list(self._entries.values())
        failing = _failing(entries)
        if self._retries_shown:
            for entry in entries:
                entry.next_retry = None
            self._retries_shown = False
        if not failing or not self.running:
            return len(failing)
        # The newest failure sets the pace: a socket that just failed is retried soon.
        delay = retry_delay(
            min(e.attempts for e in failing), self._retry_delay, self._max_retry_delay
        )
        for entry in failing:
            entry.next_retry = delay
        self._retries_shown = True
        self._reopen_call = self._reactor.callLater(delay, self._reopen)
        return len(failing)

    def _reopen(self) -> None:
        self._reopen_call = None
        self._lock.run(lambda: Deferred.fromCoroutine(self._reopen_failed())).addErrback(
            lambda failure: self.log.failure("retrying the sockets that failed", failure)
        )

    async def _reopen_failed(self) -> None:
        """One more attempt at every socket that failed to open, between reloads."""
        entries = _failing(list(self._entries.values()))
        if not entries or not self.running:
            return
        results = await self._open_entries(entries)
        for entry, value in zip(entries, results, strict=True):
            entry.attempts += 1
            if not isinstance(value, TwistedFailure):
                entry.listener = value
                entry.error = None
                self.log.info(
                    "socket {socket} slot {slot} open at attempt {attempt}",
                    socket=entry.sdef.socket_text,
                    slot=entry.slot,
                    attempt=entry.attempts,
                )
                entry.attempts = 0
                continue
            entry.error = _open_reason(value)
            # Every attempt is logged while the delay grows; then every tenth.
            if entry.attempts <= 10 or entry.attempts % 10 == 0:
                self.log.warn(
                    "socket {socket} slot {slot}: attempt {attempt} to open it failed: {reason}",
                    socket=entry.sdef.socket_text,
                    slot=entry.slot,
                    attempt=entry.attempts,
                    reason=entry.error,
                )
        self._plan_reopen()

    def _open_entries(
        self, entries: Sequence[SocketEntry]
    ) -> Deferred[list[Listener | TwistedFailure]]:
        """Open every entry's socket; each one's listener or failure, in order."""
        if self._open_many is None or not entries:
            return settle([self._open(e) for e in entries])
        try:
            return self._open_many([(e.sdef, e.slot) for e in entries])
        except Exception:
            failure = TwistedFailure()  # type: ignore[no-untyped-call]
            return defer.succeed([failure] * len(entries))

    def _open(self, entry: SocketEntry) -> Deferred[Listener]:
        try:
            return self._opener(entry.sdef, entry.slot)
        except Exception:
            return defer.fail()

    async def _stop_listeners(self, listeners: Sequence[Listener]) -> None:
        results = await self._stopping(listeners)
        for lst, value in zip(listeners, results, strict=True):
            if isinstance(value, TwistedFailure):
                self.log.error(
                    "socket {socket} did not close cleanly: {reason}",
                    socket=lst.sdef.socket_text,
                    reason=value.getErrorMessage(),
                )

    def _stopping(self, listeners: Sequence[Listener]) -> Deferred[list[TwistedFailure | None]]:
        """Stop every listener; each one's None or failure, in order."""
        if self._close_many is None or not listeners:
            with collection_paused():  # hundreds of sockets: one collection after them
                return settle([defer.maybeDeferred(lst.stop) for lst in listeners])
        try:
            return self._close_many(listeners)
        except Exception:
            failure = TwistedFailure()  # type: ignore[no-untyped-call]
            return defer.succeed([failure] * len(listeners))

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

    def _dynamic_listeners(self) -> list[Listener]:
        return [e.listener for e in self._entries.values() if e.listener is not None]

    def by_tag(self, tag: str) -> Listener | None:
        """The first open socket with this tag, in the order of `sipsock.socketindex`."""
        return first_in_order(self._static, self._dynamic_listeners(), has_tag(tag))

    def by_slot(self, slot: int) -> Listener | None:
        """The open dynamic socket in this slot."""
        return next(
            (e.listener for e in self._entries.values() if e.slot == slot and e.listener),
            None,
        )

    def first(self, proto: str) -> Listener | None:
        """The first open socket of a protocol, in the order of `sipsock.socketindex`."""
        return first_in_order(self._static, self._dynamic_listeners(), of_proto(proto))


def _failing(entries: list[SocketEntry]) -> list[SocketEntry]:
    """The entries whose socket is not open (C-level: a reload of hundreds asks)."""
    return list(compress(entries, map(is_, map(_listener_of, entries), repeat(None))))


def _in_table_order(
    current: dict[SocketDef, SocketEntry],
    wanted: Sequence[SocketDef],
    not_updated: dict[SocketDef, SocketDef],
    before: tuple[list[SocketDef], list[SocketEntry]],
) -> dict[SocketDef, SocketEntry]:
    """The entries in table order, keyed by the newest definitions, each entry's too.

    A socket whose update failed keeps its old definition (so the next reload
    retries); a wanted definition without an entry (no free slot) has none.
    Equal definitions may differ in row id and text: each entry takes its key.

    ``before`` is the registry's definitions and entries, in order, when the
    reload began. A wanted definition that is the very object at the same
    place there kept its entry (kept or retried: a reload re-keys only the
    sockets it updates, removes or adds, whose definitions are other
    objects); only the other places are looked up by equality (a Python
    `SocketDef.__hash__` each) and take their key as their definition.
    """
    keys = [not_updated.get(s, s) for s in wanted] if not_updated else wanted
    changed = changed_places(keys, before[0])
    found: list[SocketEntry | None] = kept_at(before[1], len(keys), changed)
    for index in changed:
        found[index] = current.get(keys[index])
    if any(map(is_, found, repeat(None))):
        present = list(map(is_not, found, repeat(None)))
        keys, found = list(compress(keys, present)), list(compress(found, present))
        changed = list(range(len(keys)))
    entries: dict[SocketDef, SocketEntry] = dict(zip(keys, found, strict=True))  # type: ignore[arg-type]
    for index in changed:
        found[index].sdef = keys[index]  # type: ignore[union-attr]
    return entries


def _start_update(listener: Listener, sdef: SocketDef) -> Deferred[None]:
    """``listener.update(sdef)`` as a Deferred (fails with what it raised)."""
    try:
        applying = listener.update(sdef)
    except Exception:
        return defer.fail()
    return applying if applying is not None else defer.succeed(None)


def _open_reason(failure: TwistedFailure) -> str:
    error = failure.value
    if isinstance(error, ListenError):
        return error.reason
    return str(error) or type(error).__name__
