"""`SocketFanOut`: the order each worker adopts a batch in (its batches: test_workers_pool)."""

from __future__ import annotations

from sipsock.workers.fanout import _rotated


def test_rotation_starts_each_worker_elsewhere_and_keeps_every_item() -> None:
    items = list(range(10))
    assert _rotated(items, 0, 2) == items
    assert _rotated(items, 1, 2) == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    assert _rotated(items, 2, 3) == [6, 7, 8, 9, 0, 1, 2, 3, 4, 5]
    assert _rotated(items, 1, 1) == items
    assert _rotated([], 1, 2) == []
