"""EPOLLEXCLUSIVE for descriptors that several worker processes wait on.

Every UDP worker reads every shared descriptor. Registered the plain way,
one datagram wakes every worker blocked in ``epoll_wait`` and all but one
find nothing to read: the CPU cost per message grows with the number of
workers. Registered with ``EPOLLEXCLUSIVE`` (Linux 4.5), one datagram wakes
one waiting worker.

Twisted's epoll reactor registers every descriptor plainly and changes
registrations with ``EPOLL_CTL_MOD``, which the kernel refuses for an
exclusive one. `ExclusiveEPollReactor` is that reactor plus `setExclusive`:
a selectable named there is registered with ``EPOLLEXCLUSIVE`` from then on,
and every later change of its registration is a delete and a new add. Where
the flag is missing (Python without it, or a kernel that answers EINVAL) it
falls back to the plain registration and says so once.

`make_exclusive` works with any reactor: it does nothing (and answers False)
for a reactor without `setExclusive`.

The reactor also calls the read and write handlers of a selectable that has
a true ``sipsockPlainCall`` attribute (the UDP ports of
`sipsock.transport.udp.UdpListener`) directly, without wrapping each call
in Twisted's legacy log context (``log.callWithLogger``): that context only
names the selectable in legacy ``log.msg`` lines, and building it costs
several microseconds per datagram. A readable plain-call selectable is read
without Twisted's ``_doReadOrWrite``, and an exception from its read is
logged with the socket while the socket keeps being read. A selectable with
a true ``sipsockNoLogContext`` attribute (a stream connection, a relay
channel: `sipsock.transport.logcontext`) is handled the stock way, only
without that context (about 2 us per event); what escapes its handling is
logged as ``callWithLogger`` logs it. Each turn of the
loop skips ``runUntilCurrent`` when nothing is due (`ExclusiveEPollReactor.mainLoop`):
at a few thousand datagrams a second on a quiet machine, every datagram is
a turn of its own.
"""

from __future__ import annotations

import errno
import select
from time import monotonic
from typing import Any, Final

from twisted.internet.base import _topHandler
from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger
from twisted.python import log as legacy_log

from sipsock.transport.logcontext import MARK

#: The longest wait, in seconds, that epoll_wait takes (``ReactorBase.timeout``'s cap).
_LONGEST_WAIT: Final = 2147483

#: The only event of a descriptor that is readable and nothing else.
_READABLE: Final = select.EPOLLIN

#: A selectable with this attribute true is handled the stock way, without the legacy
#: log context (set by `sipsock.transport.logcontext.skip_log_context`).
NO_LOG_CONTEXT: Final = MARK

#: The flag, or None where this Python does not know it.
EPOLLEXCLUSIVE: Final[int | None] = getattr(select, "EPOLLEXCLUSIVE", None)


class ExclusiveEPollReactor(EPollReactor):
    """Twisted's epoll reactor with `setExclusive` (EPOLLEXCLUSIVE registrations)."""

    log = Logger()

    def __init__(self) -> None:
        self._exclusive: set[int] = set()
        #: False once the kernel or Python turned EPOLLEXCLUSIVE down.
        self.exclusiveSupported = EPOLLEXCLUSIVE is not None
        #: Seconds spent waiting in epoll_wait so far: the rest of the time the worker
        #: was busy (the auto-scaler's load, `commands.Busy`).
        self.idleSeconds = 0.0
        super().__init__()  # type: ignore[no-untyped-call]

    def setExclusive(self, selectable: Any) -> bool:
        """Register ``selectable`` with EPOLLEXCLUSIVE from now on.

        A selectable that is already being watched is re-registered at once.
        Answers whether the flag is in effect (False where unsupported: the
        selectable then stays registered the plain way).
        """
        fd = selectable.fileno()
        if not self.exclusiveSupported or fd < 0:
            return False
        self._exclusive.add(fd)
        flags = self._flags_of(fd)
        if not flags:
            return True
        self._poller.unregister(fd)
        return self._register(fd, flags)

    def mainLoop(self) -> None:
        """`ReactorBase.mainLoop`, skipping ``runUntilCurrent`` when it has nothing to do.

        Each turn of the stock loop runs ``runUntilCurrent`` (thread calls, new
        and due timed calls, the shutdown after a stop) and ``timeout``, even
        when a worker woke up for one datagram and no timer is due; here the
        turn first checks whether any of that is pending, and computes the
        wait from the same clock reading when not. A failure in a turn is
        logged as the stock loop logs it ("Unexpected error in main loop")
        and the loop goes on. As in the stock loop, the failure handler
        wraps the run of turns, not each turn (its ``__enter__`` and
        ``__exit__`` were two Python calls per wake-up), and a turn is
        inline here, not a method call of its own.
        """
        while self._started:
            with _topHandler:
                seconds = self.seconds
                iterate = self.doIteration
                while self._started:
                    pending = self._pendingTimedCalls
                    now = seconds()
                    wait: float | None
                    if (
                        self.threadCallQueue
                        or self._newTimedCalls
                        or self._justStopped
                        or self._cancellations > 50
                        or (pending and pending[0].time <= now)
                    ):
                        self.runUntilCurrent()
                        wait = self.timeout()
                    elif pending:
                        wait = max(0, min(_LONGEST_WAIT, pending[0].time - now))
                    else:
                        wait = None
                    iterate(self.running and wait)  # as the stock loop

    def doPoll(self, timeout: float | None) -> None:
        """`EPollReactor.doPoll`, calling ``sipsockPlainCall`` selectables directly.

        A plain-call selectable that is only readable is read here, without
        the stock ``_doReadOrWrite`` (its checks for hang-ups and writes do
        not apply): one Python call less per wake-up. What ``doRead``
        returns is handled as the stock path handles it (a reason to
        disconnect); an exception is logged with the socket and the
        selectable keeps being read (the stock path would log it without
        the socket and close the port for good). Every other event goes
        the stock way.
        """
        waiting = monotonic()
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        finally:
            self.idleSeconds += monotonic() - waiting
        handle = self._doReadOrWrite
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if getattr(selectable, "sipsockPlainCall", False):
                if event == _READABLE and selectable.fileno() != -1:
                    try:
                        why = selectable.doRead()
                    except Exception:
                        self._read_failed(selectable)
                        continue
                    if why:
                        self._disconnectSelectable(selectable, why, True)  # type: ignore[no-untyped-call]
                    continue
                handle(selectable, fd, event)  # type: ignore[no-untyped-call]
            elif getattr(selectable, NO_LOG_CONTEXT, False):
                # What ``callWithLogger`` does, without the context it builds first.
                try:
                    handle(selectable, fd, event)  # type: ignore[no-untyped-call]
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    legacy_log.err(system=_log_prefix(selectable))  # type: ignore[no-untyped-call]
            else:
                legacy_log.callWithLogger(selectable, handle, selectable, fd, event)  # type: ignore[no-untyped-call]

    def _read_failed(self, selectable: Any) -> None:
        """A plain-call selectable's ``doRead`` raised: logged with its socket; it stays."""
        self.log.failure(
            "socket {socket}: reading failed; the socket stays open and is read again",
            socket=getattr(selectable, "label", None) or repr(selectable),
        )

    doIteration = doPoll

    def isExclusive(self, selectable: Any) -> bool:
        """Whether ``selectable``'s descriptor is registered (or will be) with EPOLLEXCLUSIVE."""
        return bool(selectable.fileno() in self._exclusive)

    def _flags_of(self, fd: int) -> int:
        flags = 0
        if fd in self._reads:
            flags |= select.EPOLLIN
        if fd in self._writes:
            flags |= select.EPOLLOUT
        return flags

    def _register(self, fd: int, flags: int) -> bool:
        """Add ``fd`` with EPOLLEXCLUSIVE; on EINVAL fall back to a plain add for good."""
        assert EPOLLEXCLUSIVE is not None
        try:
            self._poller.register(fd, flags | EPOLLEXCLUSIVE)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.exclusiveSupported = False
            self._exclusive.clear()
            self.log.warn(
                "EPOLLEXCLUSIVE refused by the kernel ({reason}): shared UDP descriptors wake "
                "every worker",
                reason=exc.strerror,
            )
            self._poller.register(fd, flags)
            return False
        return True

    def _add(
        self,
        xer: Any,
        primary: set[int],
        other: set[int],
        selectables: Any,
        event: int,
        antievent: int,
    ) -> None:
        fd = xer.fileno()
        if fd not in self._exclusive:
            super()._add(xer, primary, other, selectables, event, antievent)  # type: ignore[no-untyped-call]
            return
        if fd in primary:
            return
        flags = event
        if fd in other:
            flags |= antievent
            self._poller.unregister(fd)
        if not self._register(fd, flags):
            self._exclusive.discard(fd)
        primary.add(fd)
        selectables[fd] = xer

    def _remove(
        self,
        xer: Any,
        primary: set[int],
        other: set[int],
        selectables: Any,
        event: int,
        antievent: int,
    ) -> None:
        fd = xer.fileno()
        if fd == -1:
            fd = next((f for f, s in selectables.items() if s is xer), -1)
        if fd not in self._exclusive:
            super()._remove(xer, primary, other, selectables, event, antievent)  # type: ignore[no-untyped-call]
            return
        if fd not in primary:
            return
        self._poller.unregister(fd)
        if fd in other:
            self._register(fd, antievent)
        else:
            del selectables[fd]
            self._exclusive.discard(fd)
        primary.remove(fd)


def _log_prefix(selectable: Any) -> str:
    """``selectable.logPrefix()``, as ``callWithLogger`` reads it (a failing one named so)."""
    try:
        return str(selectable.logPrefix())
    except Exception:
        return "(buggy logPrefix method)"


def make_exclusive(reactor: Any, selectable: Any) -> bool:
    """Register ``selectable`` with EPOLLEXCLUSIVE when ``reactor`` can; answers whether it did."""
    set_exclusive = getattr(reactor, "setExclusive", None)
    if set_exclusive is None:
        return False
    return bool(set_exclusive(selectable))


def is_exclusive(reactor: Any, selectable: Any) -> bool:
    """Whether ``reactor`` watches ``selectable`` with EPOLLEXCLUSIVE (False: any other reactor)."""
    check = getattr(reactor, "isExclusive", None)
    return bool(check(selectable)) if check is not None else False


def install() -> ExclusiveEPollReactor:
    """Install `ExclusiveEPollReactor` as the global reactor (before anything imports it)."""
    from twisted.internet.main import installReactor

    reactor = ExclusiveEPollReactor()
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor
