"""One daemon per state directory: an exclusive lock on ``<state_dir>/sipsock.lock``.

The lock is a ``flock`` on a file holding the owner's pid: the kernel drops it
when the owner dies, so a crash never leaves a stale lock behind, and a second
daemon on the same state directory learns who holds it. The descriptor is
close-on-exec (Python's default), so worker processes never inherit it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "sipsock.lock"


class StateDirLockedError(Exception):
    """Another live process holds the state directory."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        self.state_dir = state_dir
        self.pid = pid
        owner = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"sipsock is already running ({owner}) with state_dir {state_dir}")


class StateLock:
    """The held lock of one state directory; `release` (or process exit) frees it."""

    def __init__(self, state_dir: Path, fd: int) -> None:
        self.state_dir = state_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock now; `StateDirLockedError` naming the owner's pid if taken.

        OSError when the lock file cannot be opened (permissions, say).
        """
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirLockedError(state_dir.absolute(), pid) from None
        except BaseException:
            os.close(fd)
            raise
        lock = cls(state_dir, fd)
        lock.record_pid(os.getpid())
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def record_pid(self, pid: int) -> None:
        """Write ``pid`` as the owner (again after twistd daemonized: a new pid)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        """Free the lock (idempotent); the file stays, emptied."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
