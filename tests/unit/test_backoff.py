"""`retry_delay`: doubling from a base, capped, for any number of failures."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipsock.backoff import retry_delay


def test_the_delay_doubles_from_the_base_up_to_the_cap() -> None:
    assert [retry_delay(n, 2.0, 30.0) for n in range(7)] == [2, 2, 4, 8, 16, 30, 30]


@given(st.integers(min_value=-5, max_value=10**9))
def test_the_delay_is_never_over_the_cap_and_never_overflows(failures: int) -> None:
    assert 2.0 <= retry_delay(failures, 2.0, 30.0) <= 30.0
