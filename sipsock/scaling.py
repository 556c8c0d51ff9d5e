"""When a worker pool grows or shrinks: an auto-scaling profile and its decision rule (pure).

A profile (`ScalingRule`) reads like OpenSIPS's ``auto_scaling_profile``:
*scale up to* ``max_processes`` *on* ``up_load`` *for* ``up_cycles`` *cycles
within* ``up_within``, *scale down to* ``min_processes`` *on* ``down_load``
*for* ``down_cycles`` *cycles* (the scale-down clause is optional). Every
``cycle`` seconds the pool's load (the mean share of the cycle its workers
spent busy, not waiting for work, 0 to 1) is one sample; `decide` turns the samples taken at
the pool's current size into one `Decision`: one worker more, one fewer, or
none, always with the reason. The samples start again after every change of
size and whenever a worker is not ready (`Blocked`), so that a pool grows or
shrinks by at most one worker per decision and a crash loop cannot make it
oscillate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

#: What a decision did: ``up`` (one worker more), ``down`` (one fewer), ``hold``.
ACTIONS: Final = ("up", "down", "hold")


@dataclass(frozen=True)
class ScalingRule:
    """An auto-scaling profile: the bounds of a pool and when it changes size.

    Loads are shares of a cycle, 0 to 1 (the configuration gives percents).
    ``down_load`` None: the pool never shrinks below what it grew to.
    """

    name: str
    min_processes: int
    max_processes: int
    up_load: float
    up_cycles: int
    up_within: int
    down_load: float | None = None
    down_cycles: int = 10
    cycle: float = 1.0

    def __post_init__(self) -> None:
        problem = rule_problem(self)
        if problem is not None:
            raise ValueError(f"auto-scaling profile {self.name}: {problem}")

    @property
    def memory(self) -> int:
        """How many samples a decision looks at, at most."""
        return max(self.up_within, self.down_cycles if self.down_load is not None else 0)

    def describe(self) -> str:
        """The profile in OpenSIPS's words (README, logs)."""
        text = (
            f"scale up to {self.max_processes} on {self.up_load:.0%} "
            f"for {self.up_cycles} cycles within {self.up_within}"
        )
        if self.down_load is not None:
            text += (
                f" scale down to {self.min_processes} on {self.down_load:.0%} "
                f"for {self.down_cycles} cycles"
            )
        return text + f" (cycle {self.cycle:g} s)"


def rule_problem(rule: ScalingRule) -> str | None:
    """What is wrong with ``rule`` (None: nothing)."""
    if not 1 <= rule.min_processes <= rule.max_processes:
        return (
            f"min_processes ({rule.min_processes}) must be at least 1 and at most "
            f"max_processes ({rule.max_processes})"
        )
    if not 0.0 <= rule.up_load <= 1.0:
        return f"scale_up_load {rule.up_load:.0%} is not within 0-100%"
    if not 1 <= rule.up_cycles <= rule.up_within:
        return (
            f"scale_up_cycles ({rule.up_cycles}) must be at least 1 and at most "
            f"scale_up_within ({rule.up_within})"
        )
    if rule.down_load is not None:
        if not 0.0 <= rule.down_load < rule.up_load:
            return (
                f"scale_down_load {rule.down_load:.0%} must be below scale_up_load "
                f"{rule.up_load:.0%} (else the pool would grow and shrink on the same load)"
            )
        if rule.down_cycles < 1:
            return f"scale_down_cycles ({rule.down_cycles}) must be at least 1"
    if not rule.cycle > 0:
        return f"cycle ({rule.cycle:g} s) must be positive"
    return None


@dataclass(frozen=True)
class Decision:
    """What one cycle decided: ``action`` (`ACTIONS`), the pool ``size`` it leads to,
    the ``load`` sampled (None: no sample), a short ``code`` (for metrics labels)
    and the ``reason`` in words."""

    action: str
    size: int
    load: float | None
    code: str
    reason: str

    def describe(self) -> str:
        """``up to 3: load >= 80% in 4 of the last 5 cycles (85%, 40%, 92%, 95%, 90%)``."""
        if self.action == "hold":
            return f"hold at {self.size}: {self.reason}"
        return f"{self.action} to {self.size}: {self.reason}"


@dataclass
class LoadHistory:
    """The load samples taken at the pool's current size, newest last (bounded)."""

    limit: int
    samples: deque[float] = field(default_factory=deque)

    def add(self, load: float) -> None:
        self.samples.append(min(max(load, 0.0), 1.0))
        while len(self.samples) > self.limit:
            self.samples.popleft()

    def clear(self) -> None:
        self.samples.clear()


def mean_load(shares: Sequence[float]) -> float | None:
    """The pool's load: the mean of its workers' busy shares (None: no worker measured)."""
    if not shares:
        return None
    return min(max(sum(shares) / len(shares), 0.0), 1.0)


def busy_share(idle_before: float, idle_after: float, seconds: float) -> float | None:
    """The share of ``seconds`` a worker did not spend waiting for work, given its idle
    seconds before and after (None: nothing to measure)."""
    if seconds <= 0 or idle_after < idle_before:
        return None  # no time passed, or another process
    return min(max(1.0 - (idle_after - idle_before) / seconds, 0.0), 1.0)


def decide(
    rule: ScalingRule,
    size: int,
    samples: Sequence[float],
    *,
    blocked: str | None = None,
    shrink_refused: str | None = None,
) -> Decision:
    """One cycle's decision for a pool of ``size`` workers whose ``samples`` were taken
    at this size (oldest first, the newest last).

    ``blocked`` says why the pool may not change now (a worker starting,
    restarting or leaving); ``shrink_refused`` why it may never shrink
    (``udp_balance = "reuseport"``). Outside its bounds the pool goes back
    within them, one worker per decision, unless blocked.
    """
    load = samples[-1] if samples else None
    if blocked is not None:
        return Decision("hold", size, load, "blocked", blocked)
    if size < rule.min_processes:
        return Decision(
            "up", size + 1, load, "below_min", f"below min_processes ({rule.min_processes})"
        )
    if size > rule.max_processes and shrink_refused is None:
        return Decision(
            "down", size - 1, load, "above_max", f"above max_processes ({rule.max_processes})"
        )
    recent = list(samples)[-rule.up_within :]
    high = sum(1 for sample in recent if sample >= rule.up_load)
    if high >= rule.up_cycles:
        # The samples themselves: their mean may sit below the threshold that
        # most of them reached.
        why = (
            f"load >= {rule.up_load:.0%} in {high} of the last {len(recent)} cycles "
            f"({_percents(recent)})"
        )
        if size >= rule.max_processes:
            return Decision(
                "hold", size, load, "at_max", f"{why}, at max_processes ({rule.max_processes})"
            )
        return Decision("up", size + 1, load, "load_high", why)
    if rule.down_load is not None and len(samples) >= rule.down_cycles:
        quiet = list(samples)[-rule.down_cycles :]
        if all(sample <= rule.down_load for sample in quiet):
            why = f"load {_percent(quiet)} <= {rule.down_load:.0%} for {len(quiet)} cycles"
            if size <= rule.min_processes:
                return Decision(
                    "hold", size, load, "at_min", f"{why}, at min_processes ({rule.min_processes})"
                )
            if shrink_refused is not None:
                return Decision("hold", size, load, "no_shrink", f"{why}, but {shrink_refused}")
            return Decision("down", size - 1, load, "load_low", why)
    if load is None:
        return Decision("hold", size, None, "measuring", "no load measured yet at this size")
    return Decision("hold", size, load, "load_normal", f"load {load:.0%}")


def _percents(samples: Sequence[float]) -> str:
    """Each of ``samples`` as a percent, oldest first (``45%, 92%, 95%``)."""
    return ", ".join(f"{sample:.0%}" for sample in samples)


def _percent(samples: Sequence[float]) -> str:
    """The mean of ``samples`` as a percent (``92%``)."""
    return f"{sum(samples) / len(samples):.0%}" if samples else "n/a"
