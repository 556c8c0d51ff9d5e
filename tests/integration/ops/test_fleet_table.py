"""One sockets table for a fleet: ``sipsock-db`` adds and fills the node column, the
stores read only their node's rows (real PostgreSQL and SQLite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.internet import reactor

from sipsock.config import load_config
from sipsock.db import open_store
from tests.pg import PostgresServer

SIPSOCK_DB = str(Path(sys.executable).with_name("sipsock-db"))


def sipsock_db(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIPSOCK_DB, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(request.getfixturevalue("postgres_db"))


def write_config(path: Path, db_url: str, node: str | None) -> Path:
    fleet = f'node_column = "node"\nnode = "{node}"\n' if node else ""
    path.write_text(f'[sockets_mgm]\ndb_url = "{db_url}"\n{fleet}')
    return path


@pytest_twisted.ensureDeferred
async def test_each_node_reads_its_rows_and_the_shared_ones(db_url: str, tmp_path: Path) -> None:
    plain = write_config(tmp_path / "plain.toml", db_url, None)
    assert sipsock_db(plain, "init").returncode == 0  # OpenSIPS's table, no node column
    a = write_config(tmp_path / "a.toml", db_url, "a")
    b = write_config(tmp_path / "b.toml", db_url, "b")
    init = sipsock_db(a, "init")  # adds the column to the existing table
    assert init.returncode == 0, init.stderr
    assert sipsock_db(b, "init").returncode == 0  # idempotent
    for socket, node in (
        ("udp:127.0.0.1:6001", "a"),
        ("udp:127.0.0.1:6002", "b"),
        ("udp:127.0.0.1:6003", None),
    ):
        added = sipsock_db(a, "add", socket, *(("--node", node) if node else ()))
        assert added.returncode == 0, added.stderr
    seen = {}
    for name, config in (("a", a), ("b", b), ("plain", plain)):
        store = open_store(load_config(config).sockets_mgm, reactor)
        try:
            seen[name] = [row.socket for row in await store.fetch()]
        finally:
            await store.close()
    assert seen["a"] == ["udp:127.0.0.1:6001", "udp:127.0.0.1:6003"]
    assert seen["b"] == ["udp:127.0.0.1:6002", "udp:127.0.0.1:6003"]
    assert len(seen["plain"]) == 3  # without node_column: every row, OpenSIPS's SQL


def test_notify_trigger_needs_postgresql(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.toml", f"sqlite:///{tmp_path / 's.sqlite'}", None)
    result = sipsock_db(config, "init", "--notify")
    assert result.returncode == 1
    assert "--notify needs PostgreSQL" in result.stderr
    assert "--node needs" in sipsock_db(config, "add", "udp:127.0.0.1:6004", "--node", "x").stderr


def test_init_notify_is_idempotent_and_names_the_channel(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "p.toml", postgres_server.url(postgres_db), None)
    for _ in range(2):
        result = sipsock_db(config, "init", "--notify")
        assert result.returncode == 0, result.stderr
        assert "channel sipsock_sockets" in result.stdout
    triggers = postgres_server.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal", dbname=postgres_db
    )
    assert triggers == [("sipsock_notify",)]
