"""The SQLite file behind ``sqlite:///``: is it there, is it still the one we opened.

An open SQLite connection keeps reading the inode it opened: after ``rm`` or
``mv`` of the file it sees the old rows forever. The store (`sipsock.db.sqlite`)
and the change poller (`sipsock.db.sqlitepoll.SQLitePoller`) compare the file's
identity (device and inode, `FileId`) before every use and reopen a replaced
file; a vanished or empty file is an error that says what to do. The daemon
opens the file read-write but never creates it (``mode=rw``): creating it, and
its tables, is ``sipsock-db init``'s job, so a failed start leaves no empty file.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple
from urllib.parse import quote

from sipsock.db.store import StoreError


class FileId(NamedTuple):
    """What names one file whatever its path: device and inode."""

    device: int
    inode: int


def file_id(path: str) -> FileId | None:
    """The identity of the file at ``path`` (None: there is none); `StoreError` if unusable."""
    info = _stat(path)
    return None if info is None else FileId(info.st_dev, info.st_ino)


def usable_file_id(path: str) -> FileId:
    """`file_id` of a file the daemon can read; `StoreError` when missing or empty."""
    info = _stat(path)
    if info is None:
        raise StoreError(
            f'SQLite file {path} does not exist (deleted or moved?): run "sipsock-db init", '
            "or check [sockets_mgm] db_url"
        )
    if info.st_size == 0:
        raise StoreError(
            f'SQLite file {path} is empty (0 bytes, left by a failed start?): run "sipsock-db init"'
        )
    return FileId(info.st_dev, info.st_ino)


def _stat(path: str) -> os.stat_result | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"SQLite file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"SQLite file {path} is not a regular file")
    return info


def existing_file_uri(path: str) -> str:
    """The ``sqlite3.connect(..., uri=True)`` name that opens ``path`` without creating it."""
    return f"file:{quote(os.path.abspath(path))}?mode=rw"


def busy_timeout(db_timeout: float) -> float:
    """SQLite's wait for a lock: shorter than ``db_timeout``, so a locked file is reported
    as "database is locked", not as a timeout."""
    return db_timeout * 0.8
