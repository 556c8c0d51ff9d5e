"""What must hold before the daemon is built, and how a start-up error ends the process.

A start-up error is one line on standard error naming the item and the
reason (``sipsock: FILE: [section] key: reason``) and exit status 1, never a
traceback: `exit_at_start` is the one place that ends the process so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from pathlib import Path
from typing import NoReturn

from twisted.logger import Logger

from sipsock.config import Settings
from sipsock.fdtable import OWN_DESCRIPTORS, reserve_descriptors
from sipsock.statelock import StateDirLockedError, StateLock
from sipsock.transport.sockopts import set_udp_receive_buffer

_log = Logger()


class StartupError(Exception):
    """Something the daemon needs at start cannot be had; the message says what."""


def exit_at_start(message: str) -> NoReturn:
    """Print ``sipsock: message`` on standard error and leave with status 1.

    Not a ``usage.UsageError``: twistd answers one with its whole usage text
    on standard output, and a bad configuration file or a port in use is not
    a mistake in the command line. Written to the process's own standard
    error: once twistd started logging, ``sys.stderr`` goes to the log.
    """
    stderr = sys.__stderr__ or sys.stderr
    stderr.write(f"sipsock: {message}\n")
    stderr.flush()
    raise SystemExit(1)


def tune_process(settings: Settings) -> None:
    """Raise the open-files limit; size the receive buffer of the UDP sockets to come.

    Then grow the descriptor table to fit every socket the configuration
    allows, before any thread runs (`sipsock.fdtable`: growing it later, in a
    reload, waits for the kernel once per doubling).
    """
    raise_open_files_limit()
    set_udp_receive_buffer(settings.core.udp_receive_buffer)
    reserve_descriptors(
        settings.sockets_mgm.max_sockets + len(settings.core.listen) + OWN_DESCRIPTORS
    )


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (every connection is a descriptor).

    Returns (old, new) soft limits; logs when it changed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (hard, soft) or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        _log.warn(
            "cannot raise the open-files limit from {soft} to {hard}: {reason}",
            soft=soft,
            hard=hard,
            reason=error,
        )
        return soft, soft
    _log.info("open-files limit raised from {soft} to {hard}", soft=soft, hard=hard)
    return soft, hard


def lock_state_dir(state_dir: Path) -> StateLock:
    """Create the state directory (0700) and lock it: a second daemon on it stops here."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"state directory {state_dir}: {error.strerror}") from None
    try:
        return StateLock.acquire(state_dir)
    except StateDirLockedError as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        raise StartupError(
            f"state directory {state_dir}: cannot lock {error.filename}: {error.strerror}"
        ) from None


def create_sqlite_database(settings: Settings) -> None:
    """Create the embedded database (table and version row) on first start.

    An empty file (a first start that failed, disk full) counts as missing; a
    file this start created and could not fill is removed again.
    """
    path = settings.sockets_mgm.db_url.path
    if path is None or (os.path.exists(path) and os.path.getsize(path) > 0):
        return
    from sipsock.db.cli import Database

    existed = os.path.exists(path)
    try:
        with Database.open(settings.sockets_mgm) as database:
            database.init()
    except Exception as error:
        with contextlib.suppress(OSError):
            if not existed and os.path.getsize(path) == 0:
                os.remove(path)
        raise StartupError(f"cannot create the SQLite database {path}: {error}") from None
