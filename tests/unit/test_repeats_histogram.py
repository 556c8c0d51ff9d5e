"""`ChangedOnly` (which repeated reports are news) and `Histogram`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.histogram import Histogram
from sipsock.repeats import ChangedOnly


def test_a_key_is_news_when_new_or_changed_and_forgotten_when_absent() -> None:
    memo: ChangedOnly[int] = ChangedOnly()
    assert memo.news([(1, "a"), (2, "b")]) == [1, 2]
    assert memo.news([(1, "a"), (2, "b")]) == []
    assert memo.news([(1, "a"), (2, "c")]) == [2]
    assert memo.news([(1, "a")]) == []
    assert memo.news([(1, "a"), (2, "c")]) == [2]  # absent for a round: news again
    assert len(memo) == 2


@given(st.lists(st.lists(st.tuples(st.integers(0, 20), st.sampled_from("xyz")), max_size=30)))
def test_memory_is_one_round_of_keys(rounds: list[list[tuple[int, str]]]) -> None:
    memo: ChangedOnly[int] = ChangedOnly()
    for reports in rounds:
        memo.news(reports)
        assert len(memo) == len({key for key, _ in reports})


def test_histogram_buckets_are_cumulative_with_le_semantics() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    assert hist.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert hist.count == 4
    assert hist.sum == pytest.approx(3.65)
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))
