"""What the transports share besides the seams: limit reports, closing, port stops.

The seam types (`Origin`, `MessageSink`, `Listener`, `ListenError`,
`SocketCounters`) live in `sipsock.seams`, the listener factory
(`open_listener`) in `sipsock.transport.listener_factory`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger, LogLevel

from sipsock.limits import DEFAULT_LOG_INTERVAL, LimitLog, Summary

# The seam types, importable from here as they were before they moved to
# `sipsock.seams` (issue 17, section 4), until their last importers
# (`sipsock.workers.pool`, being split under issue 17) import them from there.
from sipsock.seams import SocketCounters

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from sipsock.sockdef import SocketDef

__all__ = [
    "MAX_DATAGRAM_SIZE",
    "Closing",
    "LimitReporter",
    "LimitedSocket",
    "PeriodicLog",
    "stop_port",
]

#: Largest datagram the reactor reads; SIP over UDP may use all of it.
MAX_DATAGRAM_SIZE = 65535


class LimitedSocket(Protocol):
    """What a `LimitReporter` reads from its socket (any listener)."""

    sdef: SocketDef
    slot: int | None
    counters: SocketCounters


class PeriodicLog:
    """Which hits to log in full, and one summary per period for the others.

    ``hit(key)`` is True for a hit to log in full: the first of ``key`` since
    it was last quiet for a whole period (`sipsock.limits.LimitLog`'s rule).
    The other hits are only counted; a timer on ``clock`` hands each key's
    `Summary` to ``summarize`` once its period ends. `stop` hands over what
    is left and cancels the timer.
    """

    def __init__(self, clock: Any, interval: float, summarize: Callable[[Summary], None]) -> None:
        self.clock = clock
        self.rules = LimitLog(interval)
        self._summarize = summarize
        self._call: Any = None

    @property
    def interval(self) -> float:
        """Seconds between two log lines about the same key."""
        return self.rules.interval

    def hit(self, key: Hashable) -> bool:
        """Note one hit of ``key``; True when it should be logged in full."""
        if not self.rules.hit(key, self.clock.seconds()):
            return False
        self._schedule()
        return True

    def _schedule(self) -> None:
        due = self.rules.next_due()
        if self._call is not None or due is None:
            return
        self._call = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._flush)

    def _flush(self, *, final: bool = False) -> None:
        self._call = None
        for summary in self.rules.flush(self.clock.seconds(), closing=final):
            self._summarize(summary)
        if not final:
            self._schedule()

    def stop(self) -> None:
        """Summarize the hits not logged yet, cancel the timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if len(self.rules):
            self._flush(final=True)


class LimitReporter:
    """Counts every limit hit of one socket and logs them, rate-limited; folds other
    repeated problems the same way.

    The first hit of a limit is logged with its reason; later hits of the
    same limit within ``interval`` seconds are only counted, and summed up in
    one line per period ("N more in the last 60 s") by a `PeriodicLog` on
    ``reactor``. `problem` does the same for anything else a peer can cause
    once per packet or connection (a reply the kernel refuses, a broken
    stream, a failed handshake): the first of each kind is logged in full,
    the rest are folded into the same periodic summaries. `stop` logs what is
    left and cancels the timer. Memory: one entry per limit or kind seen in
    the current period.
    """

    log = Logger()

    def __init__(
        self, owner: LimitedSocket, reactor: Any, interval: float = DEFAULT_LOG_INTERVAL
    ) -> None:
        self.owner = owner
        self.periods = PeriodicLog(reactor, interval, self._summarize)
        #: The level each problem kind was first logged at (its summaries use it too).
        self._levels: dict[str, LogLevel] = {}

    def hit(self, limit: str, reason: str, peer: tuple[str, int] | None = None) -> None:
        """One hit of ``limit`` (a name of `LIMITS`): count it, log it unless it is a repeat."""
        owner = self.owner
        name = f"limit_{limit}"
        setattr(owner.counters, name, getattr(owner.counters, name) + 1)
        if not self.periods.hit(limit):
            return
        self.log.warn(
            "socket {socket} (slot {slot}): limit {limit} hit{source}: {reason} "
            "(repeats are summed up every {interval:g} s)",
            socket=owner.sdef.socket_text,
            slot=owner.slot,
            limit=limit,
            source=f" by {peer[0]}:{peer[1]}" if peer is not None else "",
            reason=reason,
            interval=self.periods.interval,
        )

    def problem(
        self,
        kind: str,
        format: str,
        *,
        level: LogLevel = LogLevel.warn,
        traceback: bool = False,
        **fields: Any,
    ) -> bool:
        """One problem of ``kind`` (a plural noun, "send failures"): log ``format`` (with
        ``socket`` and ``slot`` given) unless it is a repeat; whether it was logged.

        ``kind`` must come from a fixed set (never a peer or a reason): it keys
        the folding, and each key costs memory until a quiet period ends it.
        ``traceback``: called in an ``except`` block, the line carries the
        exception being handled.
        """
        owner = self.owner
        if not self.periods.hit(_Problem(kind)):
            return False
        self._levels[kind] = level
        format += " (more {kind} are summed up every {interval:g} s)"
        fields.update(
            socket=owner.sdef.socket_text,
            slot=owner.slot,
            kind=kind,
            interval=self.periods.interval,
        )
        if traceback:
            self.log.failure(format, None, level, **fields)
        else:
            self.log.emit(level, format, **fields)
        return True

    def answer_failed(self, **fields: Any) -> bool:
        """The sink's answer at once (the OPTIONS shortcut) raised on a message from
        ``peer``, on any transport; called in the ``except`` block. The message
        goes on to the application."""
        return self.problem(
            "OPTIONS shortcut failures",
            "socket {socket} (slot {slot}): the sink's answer at once (the OPTIONS "
            "shortcut) failed on a message from {peer}; the application gets it",
            level=LogLevel.critical,
            traceback=True,
            **fields,
        )

    def _summarize(self, summary: Summary) -> None:
        if isinstance(summary.key, _Problem):
            kind = summary.key.kind
            self.log.emit(
                self._levels.get(kind, LogLevel.warn),
                "socket {socket} (slot {slot}): {count} more {kind} in the last {seconds:.3g} s",
                socket=self.owner.sdef.socket_text,
                slot=self.owner.slot,
                kind=kind,
                count=summary.suppressed,
                seconds=summary.seconds,
            )
            return
        self.log.warn(
            "socket {socket} (slot {slot}): limit {limit} hit {count} more times "
            "in the last {seconds:.3g} s",
            socket=self.owner.sdef.socket_text,
            slot=self.owner.slot,
            limit=summary.key,
            count=summary.suppressed,
            seconds=summary.seconds,
        )

    def stop(self) -> None:
        """The socket is closing: log the hits not logged yet, cancel the timer."""
        self.periods.stop()


@dataclass(frozen=True)
class _Problem:
    """The folding key of a problem kind (apart from the limits' names)."""

    kind: str


class Closing:
    """Deferreds that all fire once, when something has finished closing."""

    def __init__(self) -> None:
        self.done = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        """A new Deferred that fires when `fire` is (or was) called."""
        from twisted.internet.defer import Deferred, succeed

        if self.done:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self) -> None:
        """Fire every waiter, now and later."""
        self.done = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


def stop_port(port: Any) -> Deferred[None]:
    """``port.stopListening()`` as a Deferred that fires with None (or the error)."""
    from twisted.internet.defer import Deferred, fail, succeed

    try:
        result = port.stopListening()
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result.addCallback(lambda _: None)
    return succeed(None)
