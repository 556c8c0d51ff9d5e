"""The look-up order of sockets: static as given, then dynamic in table order."""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from sipsock.sockdef import SocketDef, parse_row
from sipsock.socketindex import first_in_order, has_tag, in_order, in_slot, of_proto


@dataclass(frozen=True)
class Item:
    sdef: SocketDef
    slot: int | None


def item(port: int, *, row: int | None, slot: int | None, tag: str, proto: str) -> Item:
    return Item(parse_row(row, f"{proto}:127.0.0.1:{port}", tag=tag), slot)


TAGS = st.sampled_from(["a", "b"])
PROTOS = st.sampled_from(["udp", "tcp"])


@st.composite
def sockets(draw: st.DrawFn) -> tuple[list[Item], list[Item]]:
    """Static sockets and dynamic ones with distinct row ids and slots, in any order."""
    count = draw(st.integers(0, 4))
    static = [
        item(5000 + n, row=None, slot=None, tag=draw(TAGS), proto=draw(PROTOS))
        for n in range(count)
    ]
    rows = draw(st.lists(st.integers(1, 50), unique=True, max_size=6))
    slots = draw(st.permutations(range(len(rows))))
    dynamic = [
        item(6000 + n, row=row, slot=slot, tag=draw(TAGS), proto=draw(PROTOS))
        for n, (row, slot) in enumerate(zip(rows, slots, strict=True))
    ]
    return static, draw(st.permutations(dynamic))


@given(sockets())
def test_static_sockets_come_first_as_given_then_dynamic_ones_by_row_id(
    both: tuple[list[Item], list[Item]],
) -> None:
    static, dynamic = both
    ordered = in_order(static, dynamic)
    assert ordered[: len(static)] == static
    rows = [entry.sdef.row_id for entry in ordered[len(static) :]]
    assert rows == sorted(row for row in rows if row is not None)


@given(sockets(), st.randoms(use_true_random=False))
def test_the_order_does_not_depend_on_the_order_dynamic_sockets_were_learned(
    both: tuple[list[Item], list[Item]], random: Random
) -> None:
    static, dynamic = both
    shuffled = list(dynamic)
    random.shuffle(shuffled)
    assert in_order(static, shuffled) == in_order(static, dynamic)


@given(sockets(), TAGS, PROTOS)
def test_the_first_match_is_the_first_in_order(
    both: tuple[list[Item], list[Item]], tag: str, proto: str
) -> None:
    static, dynamic = both
    ordered = in_order(static, dynamic)
    for match in (has_tag(tag), of_proto(proto), in_slot(0)):
        expected = next((i for i in ordered if match(i.sdef, i.slot)), None)
        assert first_in_order(static, dynamic, match) == expected


def test_a_dynamic_socket_without_row_id_comes_after_those_with_one() -> None:
    late = item(7000, row=None, slot=0, tag="a", proto="udp")
    early = item(7001, row=9, slot=5, tag="a", proto="udp")
    assert in_order([], [late, early]) == [early, late]
    assert first_in_order([], [late, early], has_tag("a")) == early
