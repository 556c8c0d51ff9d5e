"""`AutoScaler`: every cycle, a pool's load is measured and its auto-scaling profile applied.

Each ``cycle`` seconds each ready worker is asked (`commands.Busy`) how long
it has waited in epoll_wait so far: between two answers, the rest of the
time it was busy, and that share is its load; the pool's load is their mean,
decided on as soon as every worker answered (half a cycle at most).
Time outside epoll_wait, not CPU time: a worker that cannot keep up never
waits, even when it gets little CPU on a crowded machine (its CPU share then
says 25 % while its socket overflows). A worker that does not answer within
half a cycle counts as fully busy. The
rule (`sipsock.scaling.decide`) turns the samples taken at the current size
into a `Decision`; the last one, and the last change of size, are shown by
``ps`` and ``/metrics``. A pool in which a worker is starting, restarting
or leaving takes no sample and changes nothing (the samples start again):
a new worker is ready before the next one is added, and a worker that
keeps crashing is restarted within the profile's bounds without the pool
growing or shrinking around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.deferreds import settle
from sipsock.scaling import Decision, LoadHistory, ScalingRule, busy_share, decide, mean_load


class ScalablePool(Protocol):
    """What the auto-scaler asks of a pool (`sipsock.workers.resize.SeatResizer`)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def pids(self) -> list[int]: ...

    def ask_busy(self, pid: int) -> Deferred[tuple[float, float]]: ...

    def blocked(self) -> str | None: ...

    def shrink_refusal(self) -> str | None: ...

    def grow(self) -> object: ...

    def shrink(self) -> Deferred[None]: ...


@dataclass(frozen=True)
class ScalingEvent:
    """A decision and when it was taken (reactor seconds)."""

    decision: Decision
    at: float


class AutoScaler(Service):
    """Applies ``rule`` to ``pool`` every ``rule.cycle`` seconds (see the module).

    The pool asks its workers (`ScalablePool.ask_busy`).
    """

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(
        self,
        rule: ScalingRule,
        pool: ScalablePool,
        *,
        reactor: Any,
    ) -> None:
        self.rule = rule
        self.pool = pool
        self.reactor = reactor
        self.history = LoadHistory(rule.memory)
        #: The last decision (every cycle), and the last that changed the size.
        self.last: ScalingEvent | None = None
        self.last_change: ScalingEvent | None = None
        #: The pool's load of the last cycle measured (None: not measured yet).
        self.load: float | None = None
        #: Changes of size so far, by action (``up``, ``down``).
        self.changes: dict[str, int] = {"up": 0, "down": 0}
        #: Each worker's last `Busy` answer (idle seconds, its clock), by pid.
        self._answers: dict[int, tuple[float, float]] = {}
        #: Busy shares answered this cycle, by pid; when each open question was asked.
        self._shares: dict[int, float] = {}
        self._asked: dict[int, float] = {}
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.log.info(
            "UDP worker pool {pool}: auto-scaling profile {profile}: {rule}",
            pool=self.pool.name,
            profile=self.rule.name,
            rule=self.rule.describe(),
        )
        loop = LoopingCall(self.cycle)
        loop.clock = self.reactor
        loop.start(self.rule.cycle, now=False).addErrback(
            lambda failure: self.log.failure(
                "UDP worker pool {pool}: auto-scaling stopped", failure, pool=self.pool.name
            )
        )
        self._loop = loop

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def cycle(self) -> Deferred[Decision]:
        """Ask, measure, decide, act: one cycle; fires with the decision."""
        return Deferred.fromCoroutine(self._cycle())

    async def _cycle(self) -> Decision:
        return self.apply(await self.measure())

    async def measure(self) -> float | None:
        """The pool's load over the last cycle (None: no worker measured yet).

        Each ready worker is asked now (unless a question is still open) and
        given half a cycle to answer; its share is from its previous answer
        to this one. One that has not answered by then counts fully busy (it
        reads datagrams rather than its commands).
        """
        now = self.reactor.seconds()
        pids = self.pool.pids()
        current = set(pids)
        self._answers = {pid: a for pid, a in self._answers.items() if pid in current}
        self._asked = {pid: t for pid, t in self._asked.items() if pid in current}
        self._shares = {}
        waits = [self._ask(pid, now) for pid in pids if pid not in self._asked]
        if waits:
            await self._at_most(settle(waits), self.rule.cycle / 2)
        shares: list[float] = []
        for pid in pids:
            share = self._shares.pop(pid, None)
            if share is not None:
                shares.append(share)
            elif pid in self._asked:
                shares.append(1.0)
        return mean_load(shares)

    async def _at_most(self, waiting: Deferred[Any], seconds: float) -> None:
        """Wait for ``waiting``, or ``seconds``; never cancels it (its answers still count)."""
        finished: Deferred[None] = Deferred()

        def fire(_: object) -> None:
            if not finished.called:
                finished.callback(None)

        timer = self.reactor.callLater(seconds, fire, None)
        waiting.addBoth(fire)
        await finished
        if timer.active():
            timer.cancel()

    def _ask(self, pid: int, now: float) -> Deferred[None]:
        self._asked[pid] = now

        def answered(answer: tuple[float, float]) -> None:
            self._asked.pop(pid, None)
            before = self._answers.get(pid)
            self._answers[pid] = answer
            if before is not None:
                share = busy_share(before[0], answer[0], answer[1] - before[1])
                if share is not None:
                    self._shares[pid] = share

        def failed(_: Failure) -> None:
            self._asked.pop(pid, None)  # gone, or late: the supervisor deals with it

        return self.pool.ask_busy(pid).addCallbacks(answered, failed)

    def apply(self, load: float | None) -> Decision:
        """Take this cycle's ``load`` (None: not measured): decide, and act on it."""
        self.load = load
        blocked = self.pool.blocked()
        if blocked is not None:
            self.history.clear()
        elif load is not None:
            self.history.add(load)
        size = self.pool.size
        decision = decide(
            self.rule,
            size,
            list(self.history.samples),
            blocked=blocked,
            shrink_refused=self.pool.shrink_refusal(),
        )
        event = ScalingEvent(decision, self.reactor.seconds())
        self.last = event
        if decision.action == "hold":
            return decision
        self.last_change = event
        self.changes[decision.action] += 1
        self.history.clear()
        self.log.info(
            "UDP worker pool {pool}: scaling {action} from {size} to {target} workers: {reason}",
            pool=self.pool.name,
            action=decision.action,
            size=size,
            target=decision.size,
            reason=decision.reason,
            load=decision.load,
        )
        if decision.action == "up":
            self.pool.grow()
        else:
            self.pool.shrink().addErrback(self._shrink_failed)
        return decision

    def _shrink_failed(self, failure: Failure) -> None:
        self.log.failure("UDP worker pool {pool}: shrink", failure, pool=self.pool.name)

    def summary(self) -> dict[str, Any]:
        """The pool's scaling state for ``ps`` and ``/metrics``: profile, size, load (percent),
        the last decision (with its ``Code``), the last change of size, changes so far."""
        row: dict[str, Any] = {
            "Profile": f"{self.rule.name}: {self.rule.describe()}",
            "Size": self.pool.size,
            "Load %": None if self.load is None else round(self.load * 100, 1),
            "Decision": None,
            "Code": None,
            "Last change": None,
            "Changes": dict(self.changes),
        }
        if self.last is not None:
            row["Decision"] = self.last.decision.describe()
            row["Code"] = self.last.decision.code
        if self.last_change is not None:
            ago = self.reactor.seconds() - self.last_change.at
            row["Last change"] = f"{self.last_change.decision.describe()} ({ago:.1f} s ago)"
        return row
