"""A throwaway PostgreSQL server for tests (and scripts).

    server = PostgresServer.create()       # initdb + start on a free port
    server.create_database("t1")
    server.execute("CREATE TABLE ...", dbname="t1")
    url = server.url("t1")                  # postgres://postgres@127.0.0.1:PORT/t1
    server.stop(); server.start()           # an outage, same data and port
    server.pause(); server.resume()         # a server that stops answering
    server.destroy()                        # stop and remove everything

It runs as root on CI machines, where ``initdb`` refuses to: the server runs as
the ``postgres`` system user (created when absent), with data and socket
directories in a temporary directory owned by it, listening on 127.0.0.1 only
with ``trust`` authentication. Missing binaries are an error naming what is
missing, never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

SUPERUSER = "postgres"
_SEARCH_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))


class PostgresSetupError(RuntimeError):
    """The test PostgreSQL server cannot be set up; the message says what is missing."""


def find_binary(name: str) -> str:
    """The path of a PostgreSQL server program (PATH, /usr/local/bin, /usr/lib/postgresql)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise PostgresSetupError(
        f"PostgreSQL program {name!r} not found on PATH, in /usr/local/bin or in "
        "/usr/lib/postgresql/*/bin: install the server (apt-get install -y postgresql)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL server in a temporary directory, for one test session."""

    def __init__(self, base: Path, port: int, initdb: str, pg_ctl: str) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.socket_dir = base / "run"
        self.log_file = base / "server.log"
        self.port = port
        self.host = "127.0.0.1"
        self._initdb = initdb
        self._pg_ctl = pg_ctl
        self._as_postgres = os.geteuid() == 0
        self.running = False

    @classmethod
    def create(cls, port: int | None = None) -> PostgresServer:
        """initdb in a new temporary directory and start the server."""
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        base = Path(tempfile.mkdtemp(prefix="sipsock-pg-"))
        server = cls(base, port or free_port(), initdb, pg_ctl)
        try:
            server._init()
            server.start()
        except BaseException:
            server.destroy()
            raise
        return server

    # -- lifecycle ---------------------------------------------------------

    def _init(self) -> None:
        os.chmod(self.base, 0o755)
        self.socket_dir.mkdir()
        if self._as_postgres:
            _ensure_system_user(SUPERUSER)
            account = pwd.getpwnam(SUPERUSER)
            for path in (self.base, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            [
                self._initdb,
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            "initdb",
        )

    def start(self) -> None:
        """Start (or restart after `stop`) on the same data directory and port."""
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            [
                self._pg_ctl,
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            "pg_ctl start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected at once)."""
        self.resume()
        self._run(
            [self._pg_ctl, "-D", str(self.data_dir), "-w", "-t", "60", "-m", mode, "stop"],
            "pg_ctl stop",
        )
        self.running = False

    def pause(self) -> None:
        """Freeze every server process (SIGSTOP): connections stay open, nothing answers."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- use -----------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgres://`` URL for sipsock's ``db_url``."""
        return f"postgres://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> Any:
        """A blocking psycopg2 connection in autocommit mode (close it yourself)."""
        connection = psycopg2.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname=dbname, connect_timeout=10
        )
        connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        return connection

    def execute(
        self, sql: str, params: tuple[object, ...] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement (or a script without parameters); the rows it returns."""
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows: list[tuple[Any, ...]] = (
                    cursor.fetchall() if cursor.description is not None else []
                )
                return rows
        finally:
            connection.close()

    def create_database(self, name: str) -> str:
        """Create an empty database; returns its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its clients."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals -------------------------------------------------------------

    def _pids(self) -> list[int]:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return []
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        try:
            return [postmaster, *(int(pid) for pid in children.read_text().split())]
        except OSError:
            return [postmaster]

    def _run(self, argv: list[str], what: str) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.base,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            log = (
                self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            )
            raise PostgresSetupError(
                f"{what} failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log}"
            )


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        if shutil.which("useradd") is None:
            raise PostgresSetupError(
                f"no {name!r} user and no useradd to create it: initdb refuses to run as root"
            ) from None
        subprocess.run(["useradd", "--system", name], check=True, capture_output=True)
