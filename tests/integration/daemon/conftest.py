"""Fixtures for whole-product tests: a table in a real database, the real daemon."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.pg import PostgresServer
from tests.tables import SocketTable

DaemonFactory = Callable[..., Daemon]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'sipsock.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name: str = request.getfixturevalue("postgres_db")
    return server.url(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'sipsock.sqlite'}"


@pytest.fixture
def table(db_url: str) -> SocketTable:
    socket_table = SocketTable(db_url)
    socket_table.init()
    return socket_table


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Start daemons (stopped at the end of the test, logs shown on failure)."""
    started: list[Daemon] = []

    def start(db_url: str, extra: str = "", name: str = "d") -> Daemon:
        workdir = tmp_path / f"{name}{len(started)}"
        workdir.mkdir()
        daemon = Daemon(workdir, db_url=db_url, extra=extra)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, table: SocketTable, db_url: str) -> Daemon:
    """A daemon on the parametrized backend with an empty sockets table."""
    return daemon_factory(db_url)
