"""One sockets table for a fleet: the optional node column and its SQL.

With ``[sockets_mgm] node_column`` and ``node`` set, a daemon loads only the
rows whose node column is NULL (every node) or its own name
(`sipsock.db.store.Statements.select_rows`). ``sipsock-db init`` adds the
column to an existing table (``VARCHAR(64) DEFAULT NULL``) and ``sipsock-db
add --node NAME`` fills it. Without ``node_column`` the table is OpenSIPS's,
unchanged.
"""

from __future__ import annotations

from sipsock.db.store import Statements, quote


def _names(statements: Statements) -> tuple[str, str]:
    node = statements.tables.node
    if node is None:
        raise ValueError("no node_column in [sockets_mgm]")
    mark = "`" if statements.dialect == "mysql" else '"'
    return quote(statements.tables.table, mark), quote(node, mark)


def probe_node_column(statements: Statements) -> str:
    """A query that fails with "no such column" when the node column is missing."""
    table, node = _names(statements)
    # Qualified: SQLite takes an unknown "name" alone for a string, not an error.
    return f"SELECT {table}.{node} FROM {table} WHERE 1 = 0"


def add_node_column(statements: Statements) -> str:
    """Add the node column (NULL: the row is for every node)."""
    table, node = _names(statements)
    return f"ALTER TABLE {table} ADD COLUMN {node} VARCHAR(64) DEFAULT NULL"


def set_row_node(statements: Statements) -> str:
    """Set the node of a row; parameters: the node name, the row id."""
    table, node = _names(statements)
    mark = "`" if statements.dialect == "mysql" else '"'
    param = "%s" if statements.paramstyle == "format" else "?"
    return f"UPDATE {table} SET {node} = {param} WHERE {table}.{quote('id', mark)} = {param}"
