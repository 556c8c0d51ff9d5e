"""The suite's own port picker: two runs on one machine never share a port block."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.net import BLOCK_SIZE, claim_block, free_port

CLAIM_AND_WAIT = """
import sys
from pathlib import Path
from tests.net import claim_block
block = claim_block({lowest}, {top}, lock_dir=Path({lock_dir!r}))
print(block.first, flush=True)
sys.stdin.read()
"""


def test_a_block_held_by_another_process_is_not_claimed(tmp_path: Path) -> None:
    lowest, top = 20000, 20000 + 3 * BLOCK_SIZE
    code = CLAIM_AND_WAIT.format(lowest=lowest, top=top, lock_dir=str(tmp_path))
    other = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert other.stdout is not None
        held = int(other.stdout.readline())
        mine = claim_block(lowest, top, lock_dir=tmp_path)
        assert held == lowest
        assert mine.first == lowest + BLOCK_SIZE
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=30)
    # The other process has ended: its block is free again.
    assert claim_block(lowest, top, lock_dir=tmp_path).first == lowest


def test_no_port_is_handed_out_twice_before_the_block_is_used_up(tmp_path: Path) -> None:
    block = claim_block(30000, 30000 + BLOCK_SIZE, lock_dir=tmp_path)
    seen = []
    for _ in range(BLOCK_SIZE):
        port = block.ports()[0]
        block.handed_out(port)
        seen.append(port)
    assert sorted(seen) == list(range(30000, 30000 + BLOCK_SIZE))


def test_with_every_block_held_the_whole_range_is_shared(tmp_path: Path) -> None:
    top = 40000 + BLOCK_SIZE + BLOCK_SIZE // 2  # room for one block only
    first = claim_block(40000, top, lock_dir=tmp_path)
    fallback = claim_block(40000, top, lock_dir=tmp_path)
    assert (first.first, first.size) == (40000, BLOCK_SIZE)
    assert (fallback.first, fallback.size) == (40000, top - 40000)


def test_threads_asking_at_once_never_get_the_same_port() -> None:
    # A test's helper thread (a reloader adding rows) and its main thread
    # (starting SIPp) ask for ports at the same moment: before the lock, both
    # could probe the same port free and take it, and the daemon then found
    # its new row's port "already in use" by SIPp.
    threads, each = 8, 60
    start = threading.Barrier(threads)
    got: list[list[int]] = [[] for _ in range(threads)]

    def ask(index: int) -> None:
        start.wait(timeout=30)
        got[index].extend(free_port() for _ in range(each))

    workers = [threading.Thread(target=ask, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    ports = [port for some in got for port in some]
    assert len(ports) == threads * each
    assert len(set(ports)) == len(ports), "a port handed out to two threads"
