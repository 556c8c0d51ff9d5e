"""Shared fixtures: throwaway PostgreSQL and MariaDB servers (tests/pg.py, tests/mariadb.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.mariadb import MariaDBServer
from tests.pg import PostgresServer

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, started on first use."""
    server = PostgresServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; yields its name (dropped afterwards)."""
    name = f"test_{next(_database_numbers)}"
    if not postgres_server.running:  # a test that stopped the server and then failed
        postgres_server.start()
    postgres_server.create_database(name)
    try:
        yield name
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.resume()
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """One MariaDB server for the whole session, started on first use."""
    server = MariaDBServer.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def mariadb_db(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test; yields its name (dropped afterwards)."""
    name = f"test_{next(_database_numbers)}"
    mariadb_server.start()  # a no-op unless a test stopped the server and then failed
    mariadb_server.resume()
    mariadb_server.create_database(name)
    try:
        yield name
    finally:
        mariadb_server.start()
        mariadb_server.resume()
        mariadb_server.drop_database(name)
