"""The FIFO slot allocator behind ``max_sockets``. Pure.

Slots are the ids of dynamic sockets across processes. A freed slot goes to
the back of the queue, so it is handed out again only after every other free
slot has been handed out since: a late message about a removed socket cannot
reach the socket that takes its slot next until the others have all been used.
"""

from __future__ import annotations

from collections import deque


class NoFreeSlotError(Exception):
    """Every one of the ``max_sockets`` slots is taken."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"no free slot (max_sockets={size})")


class SlotAllocator:
    """Hands out slots ``0 .. size-1`` in FIFO order of their release."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"max_sockets must be at least 1, not {size}")
        self.size = size
        self._free: deque[int] = deque(range(size))
        self._used: set[int] = set()

    def allocate(self) -> int:
        """Take the slot that has been free the longest."""
        if not self._free:
            raise NoFreeSlotError(self.size)
        slot = self._free.popleft()
        self._used.add(slot)
        return slot

    def release(self, slot: int) -> None:
        """Give a slot back; it is the last to be handed out again."""
        if slot not in self._used:
            raise ValueError(f"slot {slot} is not in use")
        self._used.remove(slot)
        self._free.append(slot)

    @property
    def used(self) -> frozenset[int]:
        return frozenset(self._used)

    @property
    def free_count(self) -> int:
        return len(self._free)
