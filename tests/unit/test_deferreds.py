"""The waits on several Deferreds: every one fires, results in order, failures consumed."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from sipsock.deferreds import all_or_first_failure, settle, wait_all

#: One Deferred each: its value, or an error message (it fails), and when it fires.
OUTCOMES = st.lists(st.one_of(st.integers(), st.text(min_size=1, max_size=5)), max_size=8)


def fire_all(waits: list[Deferred[Any]], outcomes: list[Any], order: list[int]) -> None:
    for index in order:
        outcome = outcomes[index]
        if isinstance(outcome, str):
            waits[index].errback(ValueError(outcome))
        else:
            waits[index].callback(outcome)


def results_of(wait: Deferred[Any]) -> list[Any]:
    seen: list[Any] = []
    wait.addBoth(seen.append)
    return seen


@given(OUTCOMES, st.randoms(use_true_random=False))
def test_settle_gives_each_result_in_the_order_given_whatever_the_firing_order(
    outcomes: list[Any], random: Any
) -> None:
    waits: list[Deferred[Any]] = [Deferred() for _ in outcomes]
    seen = results_of(settle(waits))
    order = list(range(len(outcomes)))
    random.shuffle(order)
    fire_all(waits, outcomes, order[:-1])
    if outcomes:
        assert seen == [], "fired before the last Deferred"
    fire_all(waits, outcomes, order[-1:])
    [results] = seen
    shown = [r.getErrorMessage() if isinstance(r, Failure) else r for r in results]
    assert shown == outcomes


@given(OUTCOMES, st.randoms(use_true_random=False))
def test_all_or_first_failure_fails_with_the_first_failure_in_the_order_given(
    outcomes: list[Any], random: Any
) -> None:
    waits: list[Deferred[Any]] = [Deferred() for _ in outcomes]
    seen = results_of(all_or_first_failure(waits))
    order = list(range(len(outcomes)))
    random.shuffle(order)
    fire_all(waits, outcomes, order)
    [result] = seen
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        assert isinstance(result, Failure)
        assert result.getErrorMessage() == failures[0]
    else:
        assert result is None


def test_wait_all_fires_with_none_after_the_last_even_when_some_failed() -> None:
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()
    seen = results_of(wait_all([first, second]))
    first.errback(RuntimeError("boom"))
    assert seen == []
    second.callback(2)
    assert seen == [None]


def test_nothing_to_wait_for_fires_at_once() -> None:
    assert results_of(settle([])) == [[]]
    assert results_of(wait_all([])) == [None]
    assert results_of(all_or_first_failure([])) == [None]


def test_failures_are_consumed_not_logged_as_unhandled() -> None:
    for wait in (settle, wait_all, all_or_first_failure):
        failing: Deferred[int] = Deferred()
        results_of(wait([failing]))
        failing.errback(RuntimeError("handled"))
        # A Deferred left holding a Failure logs "Unhandled error" when collected.
        assert not isinstance(failing.result, Failure)


def test_cancelling_the_wait_cancels_every_deferred_and_fires_with_their_failures() -> None:
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()
    wait = settle([first, second])
    seen = results_of(wait)
    wait.cancel()
    [results] = seen
    assert [type(r.value).__name__ for r in results] == ["CancelledError", "CancelledError"]


def test_a_value_passes_on_unchanged_to_later_callbacks() -> None:
    first: Deferred[int] = Deferred()
    results_of(wait_all([first]))
    first.callback(5)
    assert results_of(first) == [5]


class CountingDeferred(Deferred[Any]):
    """A Deferred that counts the callbacks added to it."""

    added = 0

    def addBoth(self, *args: Any, **kwargs: Any) -> Any:
        self.added += 1
        return super().addBoth(*args, **kwargs)


def test_settle_takes_a_value_already_there_without_running_a_callback() -> None:
    """A wait that fired with a value (``succeed(None)`` of a subscriber with nothing to
    do) is read as it is; a failure already there is still consumed; the rest wait."""
    ready = CountingDeferred()
    ready.callback("ready")
    failed = CountingDeferred()
    failed.errback(ValueError("no"))
    later: Deferred[str] = Deferred()
    done = settle([ready, failed, later])
    assert ready.added == 0
    assert failed.added == 1
    assert not done.called
    later.callback("later")
    [results] = results_of(done)
    assert results[0] == "ready" and results[2] == "later"
    assert isinstance(results[1], Failure)
    assert ready.result == "ready" and failed.result is None


def test_settle_of_waits_all_fired_already_fires_at_once() -> None:
    done = settle([succeed(1), succeed(2)])
    assert done.called and done.result == [1, 2]


def test_settle_inside_a_running_chain_waits_for_the_chain_end() -> None:
    """Asked from a callback of the very Deferred, settle gives the chain's last value."""
    wait: Deferred[int] = Deferred()
    inner: list[Deferred[list[Any]]] = []

    def ask(value: int) -> int:
        inner.append(settle([wait]))
        return value

    wait.addCallback(ask)
    wait.addCallback(lambda value: value + 1)
    wait.callback(1)
    assert inner[0].result == [2]
