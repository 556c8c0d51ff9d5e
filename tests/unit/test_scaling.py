"""The auto-scaling decision rule (`sipsock.scaling`), pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.scaling import (
    LoadHistory,
    ScalingRule,
    busy_share,
    decide,
    mean_load,
)

#: OpenSIPS's example: scale up to 4 on 80% for 4 cycles within 5, down to 1 on 20% for 10.
RULE = ScalingRule(
    "udp",
    min_processes=1,
    max_processes=4,
    up_load=0.8,
    up_cycles=4,
    up_within=5,
    down_load=0.2,
    down_cycles=10,
)


def test_four_high_cycles_within_five_scale_up_by_one() -> None:
    decision = decide(RULE, 1, [0.9, 0.1, 0.95, 0.85, 0.99])
    assert (decision.action, decision.size, decision.code) == ("up", 2, "load_high")
    assert "in 4 of the last 5 cycles" in decision.reason


def test_three_high_cycles_within_five_hold() -> None:
    decision = decide(RULE, 1, [0.9, 0.1, 0.95, 0.1, 0.99])
    assert decision.action == "hold"
    assert decision.code == "load_normal"


def test_only_the_last_window_counts() -> None:
    # Four high cycles, but one of them is older than the 5-cycle window.
    assert decide(RULE, 1, [0.9, 0.9, 0.1, 0.9, 0.1, 0.9, 0.1]).action == "hold"


def test_no_growth_past_the_maximum() -> None:
    decision = decide(RULE, 4, [1.0] * 5)
    assert (decision.action, decision.size, decision.code) == ("hold", 4, "at_max")


def test_ten_quiet_cycles_scale_down_by_one() -> None:
    decision = decide(RULE, 3, [0.1] * 10)
    assert (decision.action, decision.size, decision.code) == ("down", 2, "load_low")


def test_nine_quiet_cycles_hold() -> None:
    assert decide(RULE, 3, [0.1] * 9).action == "hold"


def test_one_busy_cycle_among_quiet_ones_holds() -> None:
    assert decide(RULE, 3, [0.1] * 5 + [0.5] + [0.1] * 4).action == "hold"


def test_no_shrink_below_the_minimum() -> None:
    decision = decide(RULE, 1, [0.0] * 10)
    assert (decision.action, decision.code) == ("hold", "at_min")


def test_refused_shrink_holds_and_says_why() -> None:
    decision = decide(RULE, 3, [0.0] * 10, shrink_refused="reuseport mode does not shrink")
    assert (decision.action, decision.size, decision.code) == ("hold", 3, "no_shrink")
    assert "reuseport mode does not shrink" in decision.reason


def test_a_blocked_pool_holds_whatever_the_load() -> None:
    decision = decide(RULE, 1, [1.0] * 5, blocked="worker dynamic/1 restarting")
    assert (decision.action, decision.code) == ("hold", "blocked")
    assert decision.reason == "worker dynamic/1 restarting"


def test_outside_the_bounds_goes_back_one_worker_at_a_time() -> None:
    assert decide(RULE, 0, []).size == 1
    assert (decide(RULE, 6, []).action, decide(RULE, 6, []).size) == ("down", 5)


def test_without_a_scale_down_clause_the_pool_never_shrinks() -> None:
    rule = ScalingRule("up", 1, 4, up_load=0.5, up_cycles=1, up_within=1)
    assert decide(rule, 3, [0.0] * 50).action == "hold"


def test_no_samples_yet_holds() -> None:
    decision = decide(RULE, 2, [])
    assert (decision.action, decision.code, decision.load) == ("hold", "measuring", None)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"min_processes": 0}, "min_processes"),
        ({"min_processes": 5}, "min_processes"),
        ({"up_load": 1.5}, "scale_up_load"),
        ({"up_cycles": 6}, "scale_up_cycles"),
        ({"up_cycles": 0}, "scale_up_cycles"),
        ({"down_load": 0.8}, "scale_down_load"),
        ({"down_cycles": 0}, "scale_down_cycles"),
        ({"cycle": 0.0}, "cycle"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_value(changes: dict[str, float], problem: str) -> None:
    values: dict[str, object] = {
        "min_processes": 1,
        "max_processes": 4,
        "up_load": 0.8,
        "up_cycles": 4,
        "up_within": 5,
        "down_load": 0.2,
        "down_cycles": 10,
        "cycle": 1.0,
        **changes,
    }
    with pytest.raises(ValueError, match=problem):
        ScalingRule("p", **values)  # type: ignore[arg-type]


def test_history_is_bounded_and_clamped() -> None:
    history = LoadHistory(3)
    for load in (0.1, 2.0, -1.0, 0.5):
        history.add(load)
    assert list(history.samples) == [1.0, 0.0, 0.5]
    history.clear()
    assert not history.samples


def test_busy_share_is_the_time_not_spent_waiting_and_mean() -> None:
    assert busy_share(1.0, 1.25, 1.0) == 0.75
    assert busy_share(1.0, 1.0, 2.0) == 1.0  # never waited
    assert busy_share(1.0, 0.5, 1.0) is None  # another process
    assert busy_share(1.0, 1.5, 0.0) is None
    assert busy_share(0.0, 3.0, 1.0) == 0.0
    assert mean_load([]) is None
    assert mean_load([0.2, 0.4]) == pytest.approx(0.3)


@given(
    size=st.integers(1, 8),
    samples=st.lists(st.floats(0.0, 1.0), max_size=20),
)
def test_a_decision_moves_at_most_one_worker_and_stays_in_bounds(
    size: int, samples: list[float]
) -> None:
    decision = decide(RULE, size, samples)
    assert abs(decision.size - size) <= 1
    if decision.action == "up":
        assert decision.size <= max(RULE.max_processes, RULE.min_processes)
    if decision.action == "down":
        assert decision.size >= RULE.min_processes
    assert decision.reason


def test_describe_reads_like_opensips() -> None:
    assert RULE.describe() == (
        "scale up to 4 on 80% for 4 cycles within 5 scale down to 1 on 20% for 10 cycles"
        " (cycle 1 s)"
    )


def test_a_scale_up_reason_shows_the_samples_not_a_mean_below_the_threshold() -> None:
    # Before: "load 69% >= 70% in 2 of the last 3 cycles" (the mean of the three).
    rule = ScalingRule("web", 1, 4, up_load=0.7, up_cycles=2, up_within=3)
    decision = decide(rule, 1, [0.30, 0.80, 0.98])
    assert decision.action == "up"
    assert decision.reason == "load >= 70% in 2 of the last 3 cycles (30%, 80%, 98%)"
