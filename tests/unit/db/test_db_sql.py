"""The SQL of a fleet's node filter and of the NOTIFY trigger (pure)."""

from __future__ import annotations

import re

from sipsock.config import TableNames
from sipsock.db import fleet
from sipsock.db.notify import listen_statement, notify_channel, notify_script
from sipsock.db.store import Statements


def test_without_node_column_the_select_is_opensips_table() -> None:
    plain = Statements(TableNames(), "format", node="edge-1")
    assert "WHERE" not in plain.select_rows
    assert plain.row_params == ()


def test_node_filter_takes_null_rows_and_our_own() -> None:
    tables = TableNames(node="node")
    pg = Statements(tables, "format", node="edge-1")
    assert pg.select_rows.endswith(
        'FROM "sockets" WHERE "sockets"."node" IS NULL OR "sockets"."node" = %s '
        'ORDER BY "sockets"."id"'
    )
    assert pg.row_params == ("edge-1",)
    lite = Statements.for_backend(tables, "sqlite", "edge-1")
    assert '"sockets"."node" = ? ORDER BY' in lite.select_rows
    my = Statements.for_backend(tables, "mysql", "edge-1")
    assert "`sockets`.`node` IS NULL OR `sockets`.`node` = %s" in my.select_rows
    # the command line (no node) sees every row
    assert "WHERE" not in Statements(tables, "format").select_rows


def test_node_column_statements() -> None:
    statements = Statements(TableNames(table="socks", node="host"), "qmark")
    assert fleet.add_node_column(statements) == (
        'ALTER TABLE "socks" ADD COLUMN "host" VARCHAR(64) DEFAULT NULL'
    )
    assert fleet.set_row_node(statements) == (
        'UPDATE "socks" SET "host" = ? WHERE "socks"."id" = ?'
    )


def test_every_column_is_qualified_so_sqlite_never_reads_a_name_as_a_string() -> None:
    tables = TableNames(table="t", socket="s", advertised="a", tag="g", flags="f", tos="x")
    for backend in ("sqlite", "postgres", "mysql"):
        statements = Statements.for_backend(tables, backend)
        q = "`" if backend == "mysql" else '"'
        for sql in (statements.select_rows, statements.delete_row, statements.select_version):
            for found in re.finditer(f"{q}([a-z_]+){q}", sql):
                if found.group(1) in ("t", "version"):
                    continue  # a table
                before = sql[: found.start()]
                assert before.endswith((f"{q}t{q}.", f"{q}version{q}.")), (backend, sql)


def test_table_error_names_every_missing_column_with_its_key() -> None:
    tables = TableNames(tag="label", node="node")
    lite = Statements.for_backend(tables, "sqlite")
    pg = Statements.for_backend(tables, "postgres")
    present = ["id", "socket", "advertised", "label", "flags", "tos", "node"]
    assert lite.table_error(present, "db") is None
    assert lite.table_error([c.upper() for c in present], "db") is None  # SQLite: any case
    assert "no column id (OpenSIPS's primary key)" in str(
        pg.table_error([c.upper() for c in present], "db")  # PostgreSQL: quoted, exact
    )
    error = str(lite.table_error(["id", "socket", "advertised", "tag", "flags"], "db"))
    assert error == (
        "table sockets in db has no column label (tag_column), tos (tos_column), "
        "node (node_column): add the column, or fix the name in [sockets_mgm]"
    )
    assert "cannot read table sockets in db" in str(lite.table_error([], "db"))


def test_notify_channel_and_trigger() -> None:
    tables = TableNames(table="sockets")
    assert notify_channel(tables) == "sipsock_sockets"
    assert listen_statement(tables) == 'LISTEN "sipsock_sockets"'
    script = notify_script(tables)
    assert "pg_notify('sipsock_sockets', TG_OP)" in script
    assert 'AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "sockets"' in script
    assert "FOR EACH STATEMENT" in script
    assert "$$" in script and "$$$$" not in script


def test_long_table_names_give_a_63_byte_channel() -> None:
    tables = TableNames(table="t" * 63)
    assert len(notify_channel(tables)) == 63
