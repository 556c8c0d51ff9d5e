"""`SameRows`: the rows of a read, the same object for a row whose values did not change."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.db.samerows import KEPT_PER_ROW, SameRows
from sipsock.db.store import SocketRow, row_from_tuple

values_strategy = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=6),
        st.sampled_from(["udp:10.0.0.1", "udp:10.0.0.2", "tcp:10.0.0.1", "bad"]),
        st.none(),
        st.sampled_from([None, "a", "b"]),
        st.none(),
        st.sampled_from([None, "16"]),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(reads=st.lists(values_strategy, min_size=1, max_size=5))
def test_rows_equal_the_values_and_unchanged_ones_are_the_objects_read_before(
    reads: list[list[tuple[Any, ...]]],
) -> None:
    same = SameRows()
    seen: dict[tuple[Any, ...], SocketRow] = {}
    for values in reads:
        # A driver gives fresh tuples (and strings) on every read.
        raw = [(*v,) for v in values]
        rows = same.rows_of(raw)
        assert rows == [row_from_tuple(v) for v in values]
        previous = {v: r for v, r in seen.items() if v in set(values)}
        for value, row in zip(values, rows, strict=True):
            if value in previous:
                assert row is previous[value]
        seen = dict(zip(values, rows, strict=True))


def test_a_changed_row_is_built_again_and_the_others_are_kept() -> None:
    same = SameRows()
    first = same.rows_of(
        [(1, "udp:10.0.0.1", None, "a", None, None), (2, "udp:10.0.0.2", None, None, None, None)]
    )
    second = same.rows_of(
        [(1, "udp:10.0.0.1", None, "b", None, None), (2, "udp:10.0.0.2", None, None, None, None)]
    )
    assert second[0] == SocketRow(1, "udp:10.0.0.1", tag="b") and second[0] is not first[0]
    assert second[1] is first[1]
    assert second is not first and same.rows_of([]) == []


def test_an_unhashable_value_is_built_every_time() -> None:
    same = SameRows()
    value: tuple[Any, ...] = (1, "udp:10.0.0.1", None, None, None, None)
    odd: tuple[Any, ...] = (2, "udp:10.0.0.2", None, None, None, None)
    for run in range(3):
        rows = same.rows_of(
            [value, (*odd[:3], f"t{run}", *odd[4:]), (3, ["x"], None, None, None, None)]
        )
        assert rows[0] == row_from_tuple(value) and rows[1].tag == f"t{run}"
        assert rows[2].id == 3


def test_memory_by_value_is_bounded_while_a_row_keeps_changing() -> None:
    same = SameRows()
    base = [(index, f"udp:10.0.0.{index}", None, None, None, None) for index in range(1, 11)]
    for run in range(500):
        same.rows_of([*base, (11, "udp:10.0.0.11", None, f"t{run}", None, None)])
    assert len(same._known) <= (KEPT_PER_ROW + 1) * 11 + 64
