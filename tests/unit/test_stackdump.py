"""``kill -USR2`` prints every thread's stack (sipsock.stackdump)."""

from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipsock.stackdump import STACK_DUMP_SIGNAL, enable_stack_dump


@pytest.fixture
def released_signal() -> Iterator[None]:
    yield
    faulthandler.unregister(STACK_DUMP_SIGNAL)
    signal.signal(STACK_DUMP_SIGNAL, signal.SIG_DFL)


@pytest.mark.usefixtures("released_signal")
def test_the_signal_prints_this_threads_stack(tmp_path: Path) -> None:
    with (tmp_path / "stacks").open("w+") as stream:
        assert enable_stack_dump(stream)
        os.kill(os.getpid(), STACK_DUMP_SIGNAL)
        stream.seek(0)
        text = stream.read()
    assert "most recent call first" in text
    assert "test_the_signal_prints_this_threads_stack" in text


@pytest.mark.usefixtures("released_signal")
def test_a_handler_of_someone_elses_is_kept(tmp_path: Path) -> None:
    received: list[int] = []
    signal.signal(STACK_DUMP_SIGNAL, lambda signum, frame: received.append(signum))
    with (tmp_path / "stacks").open("w+") as stream:
        assert not enable_stack_dump(stream)
        os.kill(os.getpid(), STACK_DUMP_SIGNAL)
        assert stream.read() == ""
    assert received == [STACK_DUMP_SIGNAL]


def test_a_stream_without_a_descriptor_is_refused() -> None:
    import io

    assert not enable_stack_dump(io.StringIO())
