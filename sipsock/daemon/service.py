"""A parent service whose children start in order and stop in reverse, each awaited.

Twisted's `MultiService` starts its children one after the other but drops
the Deferred each start returns, and gathers the stops without order. The
daemon needs order both ways (the pools run before the sockets they serve,
the admin front ends close before the registry, the registry's sockets close
before the workers stop), so this parent awaits every child, Buildbot's
``AsyncMultiService`` shape made sequential:

* `privilegedStartService` asks each child, in order, to bind what it must
  bind; when one raises, the ones before it are stopped (in reverse) and the
  error goes on.
* `startService` starts each child in order, awaiting its Deferred; when one
  fails, the ones already started are stopped in reverse and the returned
  Deferred fails with that error.
* `stopService` stops every child in reverse, each awaited; a child whose
  stop fails is logged and the next one stops all the same.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure


class OrderedMultiService(MultiService):
    """`MultiService` whose children start in order and stop in reverse, each awaited."""

    log = Logger()
    #: The names of the children whose last stop failed (logged, and skipped past).
    stop_failures: list[str]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.stop_failures = []

    def privilegedStartService(self) -> None:
        bound: list[IService] = []
        for child in list(self):
            try:
                child.privilegedStartService()
            except BaseException:
                # What the earlier children bound is let go before the error goes on
                # (the reactor may never run: only what closes at once is closed).
                for done in reversed(bound):
                    self._stop_child(done).addErrback(self._log_stop_failure, done)
                raise
            bound.append(child)

    def startService(self) -> Deferred[None]:
        Service.startService(self)  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._start_children())

    async def _start_children(self) -> None:
        started: list[IService] = []
        for child in list(self):
            try:
                await maybeDeferred(child.startService)
            except BaseException:
                self.running = False
                await self._stop_in_reverse(started)
                raise
            started.append(child)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop_in_reverse(list(self)))

    async def _stop_in_reverse(self, children: Iterable[IService]) -> None:
        self.stop_failures = []
        for child in reversed(list(children)):
            try:
                await self._stop_child(child)
            except Exception:
                self.stop_failures.append(_name_of(child))
                self.log.failure("stopping {service} failed", service=_name_of(child))

    @staticmethod
    def _stop_child(child: IService) -> Deferred[None]:
        return maybeDeferred(child.stopService)

    def _log_stop_failure(self, failure: Failure, child: IService) -> None:
        self.log.failure("stopping {service} failed", failure, service=_name_of(child))


def _name_of(child: IService) -> str:
    return child.name or type(child).__name__
