"""Shared fixtures: throwaway PostgreSQL and MariaDB servers (tests/pg.py, tests/mariadb.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from sipsock.buildinfo import EXPECT_BUILD_ENV, expectation_unmet, sip_core, stale_sip_core
from tests.mariadb import MariaDBServer
from tests.pg import PostgresServer

_database_numbers = itertools.count(1)


def pytest_report_header() -> str:
    """Which SIP core the run tests, on the first lines of the report."""
    return f"SIP core: {sip_core()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """End the run at once when it is not on the build scripts/test asked for.

    scripts/test runs the suite compiled, then pure; a build that fell back to
    pure Python in the compiled pass must fail, not pass unnoticed.
    """
    unmet = expectation_unmet(os.environ.get(EXPECT_BUILD_ENV, ""), sip_core())
    if unmet is not None:
        pytest.exit(f"wrong build: {unmet}", returncode=3)
    stale = stale_sip_core()
    if stale:
        pytest.exit(
            f"compiled modules older than their sources: {', '.join(stale)}; rebuild them "
            "(pip install -e . --config-settings editable_mode=compat) or delete them "
            "(find sipsock -name '*.so' -delete)",
            returncode=3,
        )


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
