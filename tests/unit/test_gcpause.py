"""`collection_paused`: the collector is off inside the block and as it was after."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from sipsock.gcpause import YOUNG_THRESHOLD, collection_paused


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


def in_a_fresh_interpreter(program: str) -> str:
    """What ``program`` prints, run by a new interpreter (its own collector thresholds)."""
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    return run.stdout


def test_a_worker_collects_its_young_generation_every_ten_thousand_allocations() -> None:
    # In a fresh interpreter: the thresholds are the process's own.
    program = (
        "import gc\n"
        "from sipsock.gcpause import collect_young_less_often\n"
        "before = gc.get_threshold()\n"
        "collect_young_less_often()\n"
        "print(before, gc.get_threshold())\n"
    )
    output = in_a_fresh_interpreter(program)
    assert output.split(") (") == ["(700, 10, 10", "10000, 10, 10)\n"]
    assert YOUNG_THRESHOLD == 10_000


def test_a_young_collection_still_frees_cyclic_garbage() -> None:
    program = (
        "import gc, weakref\n"
        "from sipsock.gcpause import collect_young_less_often\n"
        "collect_young_less_often()\n"
        "class Node: pass\n"
        "first = Node(); first.other = Node(); first.other.other = first\n"
        "gone = weakref.ref(first); del first\n"
        "kept = [[] for _ in range(30_000)]\n"
        "print(gone() is None)\n"
    )
    output = in_a_fresh_interpreter(program)
    assert output == "True\n"
