"""The sockets table: `ISocketStore` and its PostgreSQL and SQLite stores.

`open_store` picks the store for ``[sockets_mgm] db_url``; ``sipsock-db``
(`sipsock.db.cli`) creates and edits the table.
"""

from sipsock.db.factory import open_store
from sipsock.db.store import (
    TABLE_VERSION,
    ISocketStore,
    SocketRow,
    SocketStore,
    StoreError,
)

__all__ = [
    "TABLE_VERSION",
    "ISocketStore",
    "SocketRow",
    "SocketStore",
    "StoreError",
    "open_store",
]
