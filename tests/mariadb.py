"""A throwaway MariaDB (or MySQL) server for tests, like tests/pg.py for PostgreSQL.

    server = MariaDBServer.create()        # install-db + start on a free port
    server.create_database("t1")
    server.execute("CREATE TABLE ...", dbname="t1")
    url = server.url("t1")                  # mysql://sipsock:...@127.0.0.1:PORT/t1
    server.stop(); server.start()           # an outage, same data and port
    server.pause(); server.resume()         # a server that stops answering
    server.destroy()                        # stop and remove everything

Data directory and socket live in a temporary directory owned by the
``mysql`` system user; when the tests run as root the server runs as that
user (mariadbd refuses to run as root). It listens on 127.0.0.1 only, with
networking on, and reads no option file (``--no-defaults``). Administration
goes through ``root`` without a password; sipsock connects as `APP_USER`
with a password, as an OpenSIPS installation does. Missing programs are an
error naming what is missing, never a skip. ``SIPSOCK_MARIADBD`` (set by
scripts/test) names the server program when it is not in the usual places.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pymysql

from tests.net import free_port
from tests.polling import settle

SYSTEM_USER = "mysql"
ADMIN_USER = "root"
APP_USER = "sipsock"
APP_PASSWORD = "sipsock-rw"
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
_SERVERS = ("mariadbd", "mysqld")
_INSTALLERS = ("mariadb-install-db", "mysql_install_db")


class MariaDBSetupError(RuntimeError):
    """The test MariaDB server cannot be set up; the message says what is missing."""


def find_program(names: tuple[str, ...]) -> str:
    """The first of ``names`` found on PATH or in the usual sbin/bin directories."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in _SEARCH_DIRS:
            candidate = Path(directory) / name
            if os.access(candidate, os.X_OK):
                return str(candidate)
    raise MariaDBSetupError(
        f"MariaDB program {' or '.join(names)} not found on PATH or in "
        f"{', '.join(_SEARCH_DIRS)}: install the server (apt-get install -y mariadb-server, "
        "or run scripts/test as root, which does it)"
    )


class MariaDBServer:
    """A MariaDB server in a temporary directory, for one test session."""

    def __init__(self, base: Path, port: int, server: str, installer: str) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.run_dir = base / "run"
        self.socket = self.run_dir / "mysqld.sock"
        self.log_file = base / "server.log"
        self.port = port
        self.host = "127.0.0.1"
        self._server = server
        self._installer = installer
        self._as_system_user = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, port: int | None = None) -> MariaDBServer:
        """Initialise a data directory in a new temporary directory and start the server."""
        server = os.environ.get("SIPSOCK_MARIADBD") or find_program(_SERVERS)
        installer = find_program(_INSTALLERS)
        base = Path(tempfile.mkdtemp(prefix="sipsock-mariadb-"))
        instance = cls(base, port or free_port(udp=False), server, installer)
        try:
            instance._init()
            instance.start()
            instance.execute(f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'")
            instance.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'%'")
        except BaseException:
            instance.destroy()
            raise
        return instance

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------

    def _init(self) -> None:
        os.chmod(self.base, 0o755)
        self.data_dir.mkdir()
        self.run_dir.mkdir()
        if self._as_system_user:
            _ensure_system_user(SYSTEM_USER)
            account = pwd.getpwnam(SYSTEM_USER)
            for path in (self.base, self.data_dir, self.run_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            [
                self._installer,
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            capture_output=True,
            text=True,
            cwd=self.base,
            timeout=180,
            check=False,
            **self._user_kwargs(),
        )
        if result.returncode != 0:
            raise MariaDBSetupError(
                f"{self._installer} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )

    def start(self, timeout: float = 60) -> None:
        """Start (or restart after `stop`) on the same data directory and port."""
        if self.running:
            return
        argv = [
            self._server,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--pid-file={self.run_dir / 'mysqld.pid'}",
            f"--log-error={self.log_file}",
            f"--bind-address={self.host}",
            f"--port={self.port}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--max-connections=200",
        ]
        self._proc = subprocess.Popen(
            argv,
            cwd=self.base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._user_kwargs(),
        )
        if not settle(self._accepting, timeout, 0.1):
            self.stop()
            raise MariaDBSetupError(
                f"{self._server} did not accept connections within {timeout} s:\n{self._log_tail()}"
            )

    def _accepting(self) -> bool:
        """Whether the server takes a connection; MariaDBSetupError once it has exited."""
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise MariaDBSetupError(
                f"{self._server} exited with {self._proc.returncode}:\n{self._log_tail()}"
            )
        try:
            self.connect(connect_timeout=2).close()
        except pymysql.Error:
            return False
        return True

    def stop(self, timeout: float = 60) -> None:
        """Stop the server cleanly (SIGTERM: clients are disconnected)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        if self.running:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        if self.running:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop the server if it runs and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- use -----------------------------------------------------------------

    def url(self, dbname: str, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
        """A ``mysql://`` URL for sipsock's ``db_url``."""
        return f"mysql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str | None = None, connect_timeout: float = 10) -> Any:
        """A blocking PyMySQL connection as root, autocommit (close it yourself)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=ADMIN_USER,
            password="",
            database=dbname,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=connect_timeout,
            read_timeout=60,
        )

    def execute(
        self, sql: str, params: tuple[object, ...] | None = None, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns."""
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            connection.close()

    def create_database(self, name: str) -> str:
        """Create an empty database (utf8mb4); returns its URL."""
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database."""
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    # -- internals -------------------------------------------------------------

    def _user_kwargs(self) -> dict[str, Any]:
        if not self._as_system_user:
            return {}
        account = pwd.getpwnam(SYSTEM_USER)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")[-2000:]


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        if shutil.which("useradd") is None:
            raise MariaDBSetupError(
                f"no {name!r} user and no useradd to create it: mariadbd refuses to run as root"
            ) from None
        subprocess.run(["useradd", "--system", name], check=True, capture_output=True)
