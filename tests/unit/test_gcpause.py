"""`collection_paused`: the collector is off inside the block and as it was after."""

from __future__ import annotations

import gc

import pytest

from sipsock.gcpause import collection_paused


def test_collection_is_off_in_the_block_and_on_again_after_even_on_error() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collection_paused():
        raise ValueError("inside")
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_batch_collects_its_cycles_once_the_block_is_over() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    gc.collect()
    with collection_paused():
        for _ in range(5000):
            Node()  # cycles: only the collector frees them
        assert gc.get_count()[0] >= 5000  # nothing collected meanwhile
    assert gc.isenabled()
    Node()  # the first allocation after the block runs the pending collection
    assert gc.get_count()[0] < 5000
