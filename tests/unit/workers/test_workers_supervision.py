"""Restart rules of the worker supervisor."""

from __future__ import annotations

import pytest

from sipsock.workers.supervision import Backoff, answer_deadline, describe_exit


def test_a_worker_that_ran_long_is_restarted_at_once() -> None:
    backoff = Backoff(base=0.5, cap=30.0, stable_after=10.0)
    deaths = backoff.quick_deaths(previous=7, lifetime=10.0)
    assert deaths == 1
    assert backoff.delay(deaths) == 0.0


def test_quick_deaths_double_the_delay_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=4.0, stable_after=10.0)
    deaths = 0
    delays = []
    for _ in range(7):
        deaths = backoff.quick_deaths(deaths, lifetime=0.3)
        delays.append(backoff.delay(deaths))
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(
    ("code", "signal_number", "text"),
    [
        (0, None, "exited with status 0"),
        (3, None, "exited with status 3"),
        (None, 9, "killed by signal 9 (SIGKILL)"),
        (None, 15, "killed by signal 15 (SIGTERM)"),
        (None, 200, "killed by signal 200"),
        (None, None, "ended (status unknown)"),
    ],
)
def test_an_exit_is_described_for_the_log(
    code: int | None, signal_number: int | None, text: str
) -> None:
    assert describe_exit(code, signal_number) == text


def test_a_running_worker_has_the_command_timeout_and_a_starting_one_its_ready_time() -> None:
    assert answer_deadline(False, 100.0, 200.0, 10.0, 30.0) == 10.0
    assert answer_deadline(True, 100.0, 105.0, 10.0, 30.0) == 25.0  # 30 s from its start
    assert answer_deadline(True, 100.0, 125.0, 10.0, 30.0) == 10.0  # never less than 10
