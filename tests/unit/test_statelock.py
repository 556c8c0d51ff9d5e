"""sipsock.statelock: one holder per state directory, with its pid; freed on release."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipsock.statelock import LOCK_NAME, StateDirLockedError, StateLock


def test_second_acquire_names_the_holder(tmp_path: Path) -> None:
    lock = StateLock.acquire(tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(StateDirLockedError) as raised:
            StateLock.acquire(tmp_path)
        assert raised.value.pid == os.getpid()
        assert str(raised.value) == (
            f"sipsock is already running (pid {os.getpid()}) with state_dir {tmp_path}"
        )
    finally:
        lock.release()
    again = StateLock.acquire(tmp_path)
    again.release()
    again.release()  # idempotent


def test_another_process_holding_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from sipsock.statelock import StateLock; "
            f"StateLock.acquire(Path({str(tmp_path)!r})); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StateDirLockedError) as raised:
            StateLock.acquire(tmp_path)
        assert raised.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait(10)
    StateLock.acquire(tmp_path).release()  # the kernel dropped the dead holder's lock


def test_relative_state_dir_is_named_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    lock = StateLock.acquire(Path("var"))
    try:
        with pytest.raises(StateDirLockedError, match=f"with state_dir {tmp_path / 'var'}$"):
            StateLock.acquire(Path("var"))
    finally:
        lock.release()
