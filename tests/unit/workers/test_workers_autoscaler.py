# mypy: disable-error-code="no-untyped-call"
"""`AutoScaler`: measured load (time not waiting for work), one change at a time,
no oscillation around a crash loop."""

from __future__ import annotations

import itertools

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from sipsock.scaling import ScalingRule
from sipsock.workers.autoscaler import AutoScaler

RULE = ScalingRule(
    "p",
    min_processes=1,
    max_processes=3,
    up_load=0.8,
    up_cycles=2,
    up_within=3,
    down_load=0.2,
    down_cycles=3,
    cycle=1.0,
)


class Pool:
    """A pool whose workers burn ``busy`` of each second; changes are recorded."""

    name = "dynamic"

    def __init__(self, clock: MemoryReactorClock, size: int = 1) -> None:
        self.clock = clock
        self.workers = list(range(100, 100 + size))
        self.busy = 0.0
        self.blocked_by: str | None = None
        self.refusal: str | None = None
        self.grown = 0
        self.shrunk = 0
        self.idle: dict[int, float] = {}
        self.silent: set[int] = set()

    @property
    def size(self) -> int:
        return len(self.workers)

    def pids(self) -> list[int]:
        return list(self.workers)

    def blocked(self) -> str | None:
        return self.blocked_by

    def shrink_refusal(self) -> str | None:
        return self.refusal

    def grow(self) -> object:
        self.grown += 1
        self.workers.append(max(self.workers) + 1)
        return None

    def shrink(self) -> Deferred[None]:
        self.shrunk += 1
        self.workers.pop()
        return defer.succeed(None)

    def ask_busy(self, pid: int) -> Deferred[tuple[float, float]]:
        if pid in self.silent:
            return Deferred()  # never answers
        return defer.succeed((self.idle.get(pid, 0.0), self.clock.seconds()))

    def run(self, seconds: float = 1.0) -> None:
        for pid in self.workers:
            self.idle[pid] = self.idle.get(pid, 0.0) + (1 - self.busy) * seconds
        self.clock.advance(seconds)


def scaler(size: int = 1) -> tuple[AutoScaler, Pool]:
    clock = MemoryReactorClock()
    pool = Pool(clock, size)
    auto = AutoScaler(RULE, pool, reactor=clock)
    auto.startService()
    return auto, pool


def test_a_busy_pool_grows_one_worker_per_decision_up_to_the_maximum() -> None:
    auto, pool = scaler()
    pool.busy = 0.95
    sizes = []
    for _ in range(20):
        pool.run()
        sizes.append(pool.size)
    assert pool.size == 3
    # Never two workers in one cycle, and the samples restart after each change.
    assert all(b - a <= 1 for a, b in itertools.pairwise(sizes))
    assert sizes.index(2) >= 2 and sizes.index(3) - sizes.index(2) >= 2
    assert auto.last is not None and auto.last.decision.code == "at_max"
    assert auto.changes == {"up": 2, "down": 0}
    summary = auto.summary()
    assert summary["Size"] == 3 and summary["Load %"] == 95.0
    assert summary["Last change"].startswith(
        "up to 3: load >= 80% in 2 of the last 2 cycles (95%, 95%)"
    )


def test_a_quiet_pool_shrinks_to_its_minimum() -> None:
    auto, pool = scaler(3)
    pool.busy = 0.05
    for _ in range(20):
        pool.run()
    assert pool.size == 1
    assert auto.changes == {"up": 0, "down": 2}


def test_a_pool_that_may_not_shrink_holds_and_says_why() -> None:
    auto, pool = scaler(3)
    pool.refusal = "reuseport"
    for _ in range(10):
        pool.run()
    assert pool.size == 3
    assert auto.last is not None and auto.last.decision.code == "no_shrink"


def test_a_crash_loop_neither_grows_nor_shrinks_the_pool() -> None:
    auto, pool = scaler(2)
    pool.busy = 0.99
    for cycle in range(30):
        # A worker restarting every other cycle: the busy cycles between never add up.
        pool.blocked_by = "worker dynamic/2 restarting" if cycle % 2 == 0 else None
        pool.run()
    assert (pool.grown, pool.shrunk) == (0, 0)
    pool.busy = 0.0
    for cycle in range(30):
        pool.blocked_by = "worker dynamic/2 restarting" if cycle % 3 == 0 else None
        pool.run()
    assert (pool.grown, pool.shrunk) == (0, 0)
    assert auto.last is not None


def test_a_worker_measured_for_less_than_a_cycle_is_not_counted() -> None:
    auto, pool = scaler(1)
    pool.busy = 0.5
    pool.run()  # first answer: nothing to compare it with
    assert auto.load is None
    pool.run()
    assert auto.load == 0.5


def test_a_worker_too_busy_to_answer_counts_as_fully_busy() -> None:
    auto, pool = scaler(2)
    pool.silent.add(101)
    pool.busy = 0.2
    loads = []
    for _ in range(6):
        pool.run()
        loads.append(auto.load)
    # 0.2, and 1.0 for the one that has not answered within half a cycle
    assert loads[-1] == pytest.approx(0.6), loads


def test_stopped_scaler_decides_nothing() -> None:
    auto, pool = scaler()
    auto.stopService()
    pool.busy = 1.0
    for _ in range(10):
        pool.run()
    assert auto.last is None
