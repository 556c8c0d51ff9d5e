"""Change sources of the automatic reload: their seam, and the one for a database URL.

PostgreSQL: `sipsock.db.pglisten.PostgresListener` (LISTEN/NOTIFY); SQLite:
`sipsock.db.sqlitepoll.SQLitePoller` (``PRAGMA data_version`` and the file's
identity). Each is imported only when its scheme is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from sipsock.config import SocketsMgmSettings


class ChangeSource(Protocol):
    """Something that calls its ``on_change`` when the table may have changed."""

    def start(self) -> None:
        """Begin watching; errors are logged and retried, never raised."""

    def stop(self) -> Deferred[None]:
        """Stop watching and release the connection."""


def make_source(
    settings: SocketsMgmSettings, on_change: Callable[[str], None], reactor: Any
) -> ChangeSource:
    """The change source for ``db_url``: LISTEN (PostgreSQL) or polling (SQLite)."""
    url = settings.db_url
    if url.scheme == "postgres":
        from sipsock.db.pglisten import PostgresListener

        return PostgresListener(settings, on_change, reactor)
    if url.scheme == "sqlite":
        from sipsock.db.sqlitepoll import SQLitePoller

        assert url.path is not None
        return SQLitePoller(
            url.path, settings.sqlite_poll_interval, on_change, reactor, settings.db_timeout
        )
    raise ValueError(f"auto_reload is not available for {url.scheme}")
