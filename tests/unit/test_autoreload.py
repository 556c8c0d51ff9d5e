"""The debounce of automatic reloads, on a fake clock."""

from __future__ import annotations

import itertools

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from sipsock.autoreload import Debouncer
from sipsock.db.pglisten import RECONNECT_INITIAL, RECONNECT_MAX, reconnect_delays
from sipsock.reloadplan import ReloadReport
from sipsock.testing import FakeRegistry


def test_a_burst_of_signals_gives_one_reload() -> None:
    clock, registry = Clock(), FakeRegistry()
    debouncer = Debouncer(registry.reload, 0.5, clock)
    for _ in range(100):
        debouncer.changed()
        clock.advance(0.001)
    assert registry.reloads == 0
    clock.advance(0.5)
    assert registry.reloads == 1
    assert (debouncer.signals, debouncer.reloads) == (100, 1)
    clock.advance(10)
    assert registry.reloads == 1


def test_signals_during_a_reload_give_exactly_one_more() -> None:
    clock, registry = Clock(), FakeRegistry()
    registry.hold = True
    debouncer = Debouncer(registry.reload, 0.2, clock)
    debouncer.changed()
    clock.advance(0.2)
    assert registry.reloads == 1
    for _ in range(50):
        debouncer.changed()
    registry.pending.pop().callback(ReloadReport())
    assert registry.reloads == 1  # the next one waits for the debounce again
    clock.advance(0.2)
    assert registry.reloads == 2
    registry.pending.pop().callback(ReloadReport())
    clock.advance(5)
    assert registry.reloads == 2


def test_a_failed_reload_is_not_fatal() -> None:
    clock = Clock()
    calls = itertools.count(1)

    def failing() -> Deferred[object]:
        next(calls)
        return fail(RuntimeError("database down"))

    debouncer = Debouncer(failing, 0.1, clock)
    debouncer.changed()
    clock.advance(0.1)
    debouncer.changed()
    clock.advance(0.1)
    assert next(calls) == 3


def test_stop_cancels_a_pending_reload() -> None:
    clock, registry = Clock(), FakeRegistry()
    debouncer = Debouncer(registry.reload, 0.5, clock)
    debouncer.changed()
    debouncer.stop()
    debouncer.changed()
    clock.advance(5)
    assert registry.reloads == 0
    assert clock.getDelayedCalls() == []


def test_reconnect_delays_start_now_and_are_capped() -> None:
    delays = list(itertools.islice(reconnect_delays(), 8))
    assert delays[0] == 0.0
    assert delays[1] == RECONNECT_INITIAL
    assert max(delays) == RECONNECT_MAX
    assert delays == sorted(delays)
