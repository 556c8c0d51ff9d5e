"""``[sockets_mgm]``: the database URL, the table's names and the module's parameters.

`parse_db_url` reads ``db_url`` (PostgreSQL, MySQL/MariaDB, SQLite); table
and column names are checked as SQL identifiers before any reaches SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from sipsock.config.reader import IDENTIFIER_RE, Reader, Section, field_defaults
from sipsock.scaling import ScalingRule

#: How the UDP workers share a socket: one descriptor read by all, or one
#: SO_REUSEPORT member each (README "UDP worker pool").
UDP_BALANCE_MODES: Final = ("shared", "reuseport")
DEFAULT_UDP_BALANCE: Final = "shared"
_PG_QUERY_KEYS: Final = frozenset(
    {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout"}
)
_MYSQL_QUERY_KEYS: Final = frozenset({"unix_socket", "charset"})
_NODE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``db_url``: PostgreSQL, MySQL/MariaDB (``mysql://``) or SQLite (``sqlite:///``)."""

    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def display(self) -> str:
        """The URL for logs and errors, with the password hidden."""
        if self.scheme == "sqlite":
            return f"sqlite:///{self.path}"
        auth = f"{self.user}:***@" if self.password else (f"{self.user}@" if self.user else "")
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{auth}{self.host or ''}{port}/{self.database or ''}"


def parse_db_url(url: str) -> DatabaseURL:
    """Parse a ``db_url``; raises ValueError with a reason naming the problem."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a URL (use postgres://, mysql:// or sqlite:///path)")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise ValueError(
                "an SQLite URL needs a file: sqlite:///relative/path or sqlite:////abs"
            )
        return DatabaseURL(scheme="sqlite", path=unquote(path))
    if scheme in ("postgres", "postgresql"):
        return _parse_server_url(url, "postgres", "PostgreSQL", _PG_QUERY_KEYS)
    if scheme == "mysql":
        parsed = _parse_server_url(url, "mysql", "MySQL", _MYSQL_QUERY_KEYS)
        for key, value in parsed.options:
            if key == "unix_socket" and not value:
                raise ValueError("unix_socket needs a path: ?unix_socket=/run/mysqld/mysqld.sock")
            if key == "charset" and not IDENTIFIER_RE.fullmatch(value):
                raise ValueError(f"charset {value!r} is not a character set name (e.g. utf8mb4)")
        return parsed
    raise ValueError(f"unsupported scheme {scheme!r} (use postgres://, mysql:// or sqlite:///)")


def _parse_server_url(
    url: str, scheme: str, product: str, known_options: frozenset[str]
) -> DatabaseURL:
    """``scheme://user:password@host[:port]/database[?option=value...]``."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ValueError(f"a {product} URL needs a database name: {scheme}://user:password@host/db")
    options = tuple(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted({key for key, _ in options} - known_options)
    if unknown:
        raise ValueError(
            f"unknown {product} URL options {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known_options))})"
        )
    return DatabaseURL(
        scheme=scheme,
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
        options=options,
    )


@dataclass(frozen=True)
class TableNames:
    """The sockets table and its column names, all checked identifiers."""

    table: str = "sockets"
    socket: str = "socket"
    advertised: str = "advertised"
    tag: str = "tag"
    flags: str = "flags"
    tos: str = "tos"
    #: ``node_column``: the column naming the node a row is for (None: OpenSIPS's table).
    node: str | None = None


@dataclass(frozen=True)
class SocketsMgmSettings:
    """``[sockets_mgm]``: the parameters of OpenSIPS's module, same names and defaults."""

    db_url: DatabaseURL
    tables: TableNames = TableNames()
    processes: int = 8
    max_sockets: int = 100
    db_timeout: float = 5.0
    udp_balance: str = DEFAULT_UDP_BALANCE
    #: Reload on change: PostgreSQL LISTEN/NOTIFY, SQLite ``PRAGMA data_version`` polling.
    auto_reload: bool = False
    auto_reload_debounce: float = 0.5
    sqlite_poll_interval: float = 1.0
    #: This daemon's name in a fleet: it loads rows whose ``node_column`` is NULL or this.
    node: str | None = None
    #: ``auto_scaling_profile``: the dynamic UDP pool's profile (None: ``processes`` fixed).
    auto_scaling_profile: ScalingRule | None = None


#: The ``*_column`` keys, each naming the `TableNames` field of the same name.
COLUMNS: Final = ("socket", "advertised", "tag", "flags", "tos")
#: The keys of ``[sockets_mgm]``: the settings' fields, with the table's names as
#: OpenSIPS spells them (``table_name``, ``*_column``, ``node_column``).
SOCKETS_MGM_KEYS: Final = frozenset(
    (set(field_defaults(SocketsMgmSettings)) - {"tables"})
    | {"db_url", "table_name", "node_column"}
    | {f"{column}_column" for column in COLUMNS}
)


def read_sockets_mgm(
    reader: Reader, data: Mapping[str, Any], state_dir: Path
) -> SocketsMgmSettings:
    """``[sockets_mgm]``; ``db_url`` defaults to an SQLite file in the state directory."""
    sec = reader.section(data, "sockets_mgm", SocketsMgmSettings, keys=SOCKETS_MGM_KEYS)
    default_url = f"sqlite:///{state_dir / 'sipsock.sqlite'}"
    raw_url = sec.get("db_url", str, default_url)
    try:
        db_url = parse_db_url(raw_url)
    except ValueError as exc:
        sec.fail("db_url", str(exc))
    table_defaults = field_defaults(TableNames)
    names = {"table": sec.identifier("table_name", table_defaults["table"])}
    for column in COLUMNS:
        names[column] = sec.identifier(f"{column}_column", table_defaults[column])
    fleet_and_reload = _read_fleet_and_reload(sec, db_url)
    return SocketsMgmSettings(
        db_url=db_url,
        tables=TableNames(**names, node=fleet_and_reload.pop("node_column")),
        **fleet_and_reload,
        processes=sec.integer("processes", 1, 256),
        max_sockets=sec.integer("max_sockets", 1, 65535),
        db_timeout=sec.number("db_timeout", 0.1, 300.0),
        udp_balance=sec.choice("udp_balance", UDP_BALANCE_MODES),
    )


def _read_fleet_and_reload(sec: Section, db_url: DatabaseURL) -> dict[str, Any]:
    """``auto_reload*``, ``sqlite_poll_interval``, ``node_column`` and ``node`` of [sockets_mgm]."""
    auto_reload = sec.get("auto_reload", bool)
    if auto_reload and db_url.scheme not in ("postgres", "sqlite"):
        sec.fail(
            "auto_reload",
            f"needs PostgreSQL (LISTEN/NOTIFY) or SQLite (polling), not {db_url.scheme}: "
            "call sockets_reload after each change instead",
        )
    node_column = sec.identifier("node_column", None) if "node_column" in sec else None
    node = sec.get("node", str)
    if node is not None and not _NODE_RE.fullmatch(node):
        sec.fail("node", f"{node[:70]!r} is not a node name ([A-Za-z0-9_.:-], 1-64)")
    if node_column is not None and node is None:
        sec.fail("node_column", "needs node (this daemon's name in the fleet)")
    if node is not None and node_column is None:
        sec.fail("node", "needs node_column (the column holding node names)")
    return {
        "auto_reload": auto_reload,
        "auto_reload_debounce": sec.number("auto_reload_debounce", 0.0, 60.0),
        "sqlite_poll_interval": sec.number("sqlite_poll_interval", 0.05, 3600.0),
        "node_column": node_column,
        "node": node,
    }
