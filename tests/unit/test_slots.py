"""The FIFO slot allocator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.slots import NoFreeSlotError, SlotAllocator


def test_slots_are_handed_out_in_order() -> None:
    slots = SlotAllocator(5)
    assert [slots.allocate() for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_freed_slot_comes_back_only_after_every_other_free_slot() -> None:
    slots = SlotAllocator(8)
    for _ in range(5):
        slots.allocate()
    slots.release(2)
    assert [slots.allocate() for _ in range(3)] == [5, 6, 7]
    assert slots.allocate() == 2


def test_release_order_is_reuse_order() -> None:
    slots = SlotAllocator(3)
    for _ in range(3):
        slots.allocate()
    slots.release(2)
    slots.release(0)
    slots.release(1)
    assert [slots.allocate() for _ in range(3)] == [2, 0, 1]


def test_no_free_slot_names_max_sockets() -> None:
    slots = SlotAllocator(3)
    for _ in range(3):
        slots.allocate()
    with pytest.raises(NoFreeSlotError, match=r"^no free slot \(max_sockets=3\)$"):
        slots.allocate()


def test_a_slot_freed_when_full_is_usable_at_once() -> None:
    slots = SlotAllocator(3)
    for _ in range(3):
        slots.allocate()
    slots.release(1)
    assert slots.allocate() == 1


def test_releasing_a_free_slot_is_an_error() -> None:
    slots = SlotAllocator(2)
    with pytest.raises(ValueError, match="slot 1 is not in use"):
        slots.release(1)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlotAllocator(0)


@given(st.integers(1, 20), st.lists(st.booleans(), max_size=200))
def test_fifo_invariant_holds_for_any_sequence(size: int, ops: list[bool]) -> None:
    """A released slot is not handed out before every slot free at its release."""
    slots = SlotAllocator(size)
    in_use: list[int] = []
    waiting: dict[int, set[int]] = {}
    for take in ops:
        if take and slots.free_count:
            slot = slots.allocate()
            assert not waiting.get(slot), f"slot {slot} reused before {waiting[slot]}"
            for pending in waiting.values():
                pending.discard(slot)
            waiting.pop(slot, None)
            in_use.append(slot)
        elif in_use:
            slot = in_use.pop(0)
            free_now = set(range(size)) - set(in_use) - {slot}
            slots.release(slot)
            waiting[slot] = free_now
    assert slots.used == frozenset(in_use)
