"""Change notification for the sockets table: the PostgreSQL trigger and its channel.

``sipsock-db init --notify`` installs a statement-level trigger that runs
``pg_notify(channel, TG_OP)`` after every INSERT, UPDATE, DELETE or TRUNCATE
of the sockets table; a daemon with ``[sockets_mgm] auto_reload`` LISTENs on
the channel (`sipsock.autoreload`). The channel is ``sipsock_`` followed by
the table name, cut to PostgreSQL's 63-byte identifier limit; every daemon of
a fleet reading the same table listens on the same channel.
"""

from __future__ import annotations

from importlib import resources
from string import Template
from typing import Final

from sipsock.config import TableNames
from sipsock.db.store import quote

#: PostgreSQL cuts longer identifiers (channel names included) to this many bytes.
MAX_IDENTIFIER: Final = 63
CHANNEL_PREFIX: Final = "sipsock_"
TRIGGER_NAME: Final = "sipsock_notify"
FUNCTION_PREFIX: Final = "sipsock_notify_"


def notify_channel(tables: TableNames) -> str:
    """The NOTIFY channel of the sockets table: ``sipsock_<table>`` (at most 63 bytes)."""
    return (CHANNEL_PREFIX + tables.table)[:MAX_IDENTIFIER]


def trigger_function(tables: TableNames) -> str:
    """The name of the trigger function: ``sipsock_notify_<table>`` (at most 63 bytes)."""
    return (FUNCTION_PREFIX + tables.table)[:MAX_IDENTIFIER]


def notify_script(tables: TableNames) -> str:
    """The SQL that (re)creates the trigger function and the trigger (idempotent)."""
    text = resources.files("sipsock.db").joinpath("schema_postgres_notify.sql").read_text("ascii")
    return Template(text).substitute(
        function=quote(trigger_function(tables)),
        trigger=quote(TRIGGER_NAME),
        table=quote(tables.table),
        channel=notify_channel(tables),
    )


def listen_statement(tables: TableNames) -> str:
    """``LISTEN`` on the table's channel (the name quoted, it is an identifier)."""
    return f"LISTEN {quote(notify_channel(tables))}"


def trigger_exists_query() -> str:
    """Whether the NOTIFY trigger is on a table: parameters trigger name, table name."""
    return (
        "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') "
        "AND pg_table_is_visible(c.oid)"
    )
