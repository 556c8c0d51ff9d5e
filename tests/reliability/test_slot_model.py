"""The FIFO slot checker of the reload storm catches an early reuse (and nothing else)."""

from __future__ import annotations

import random

import pytest

from sipsock.slots import SlotAllocator
from tests.reliability.harness import FifoSlotModel, SlotOrderError


def test_slot_model_accepts_what_the_real_allocator_hands_out() -> None:
    rng = random.Random(3)
    allocator = SlotAllocator(20)
    live: dict[int, str] = {}
    model = FifoSlotModel(20)
    for step in range(500):
        for slot in rng.sample(sorted(live), min(len(live), rng.randint(0, 4))):
            allocator.release(slot)
            del live[slot]
        for _ in range(min(allocator.free_count, rng.randint(0, 4))):
            live[allocator.allocate()] = f"udp:127.0.0.1:{step}"
        model.observe(live)
    assert model.allocated > 500


def test_slot_model_rejects_a_slot_reused_while_an_older_one_waits() -> None:
    model = FifoSlotModel(4, {0: "a", 1: "b"})
    model.observe({0: "a", 2: "c"})  # 1 freed, 2 (free since the start) taken
    with pytest.raises(SlotOrderError, match=r"slots \[1\] handed out while slots \[3\]"):
        model.observe({0: "a", 2: "c", 1: "d"})


def test_slot_model_rejects_a_slot_freed_and_taken_in_the_same_reload() -> None:
    model = FifoSlotModel(4, {0: "a"})
    with pytest.raises(SlotOrderError):
        model.observe({0: "b"})  # socket a closed, b opened in the same slot
