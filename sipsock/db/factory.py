"""`open_store`: the store for ``[sockets_mgm] db_url``, by its scheme.

The backends import `sipsock.db.store` for the interface and its errors; this
module imports the backends (each only when its scheme is asked for, so a
PostgreSQL daemon never loads PyMySQL), which keeps the import direction one
way: factory, then backends, then the store's interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipsock.db.store import ISocketStore, StoreError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from sipsock.config import SocketsMgmSettings


def open_store(settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> ISocketStore:
    """The store for ``settings.db_url``: PostgreSQL, MySQL/MariaDB or SQLite."""
    if settings.db_url.scheme == "sqlite":
        from sipsock.db.sqlite import SQLiteStore

        return SQLiteStore(settings, reactor=reactor)
    if settings.db_url.scheme == "postgres":
        from sipsock.db.postgres import PostgresStore

        return PostgresStore(settings, reactor=reactor)
    if settings.db_url.scheme == "mysql":
        try:
            from sipsock.db.mysql import MySQLStore
        except ImportError as exc:
            raise StoreError(
                f"{settings.db_url.display()} needs PyMySQL ({exc}): pip install 'sipsock[mysql]'"
            ) from None
        return MySQLStore(settings, reactor=reactor)
    raise StoreError(f"unsupported database scheme {settings.db_url.scheme!r}")
