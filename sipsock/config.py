"""The configuration file (TOML) turned into frozen settings.

Every key is checked at load: an unknown section or key, a wrong type or an
out-of-range number raises `ConfigError` naming the file, the key and the
problem. Relative paths are taken from the working directory, as twistd does.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from sipsock.sockdef import SocketDef, SocketDefError, parse_static

IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_STATE_DIR: Final = "var"
DEFAULT_APPLICATION: Final = "sipsock.apps:Responder"
_PG_QUERY_KEYS: Final = frozenset(
    {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout"}
)


class ConfigError(Exception):
    """A configuration file that cannot be used; names the file, key and reason."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        return f"{self.path}: {key}{self.reason}"


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``db_url``: PostgreSQL (``postgres://``) or SQLite (``sqlite:///path``)."""

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
        raise ValueError(f"{url!r} is not a URL (use postgres://... or sqlite:///path)")
    scheme = scheme.lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise ValueError(
                "an SQLite URL needs a file: sqlite:///relative/path or sqlite:////abs"
            )
        return DatabaseURL(scheme="sqlite", path=unquote(path))
    if scheme in ("postgres", "postgresql"):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ValueError("a PostgreSQL URL needs a database name: postgres://user@host/db")
        options = tuple(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted({key for key, _ in options} - _PG_QUERY_KEYS)
        if unknown:
            raise ValueError(
                f"unknown PostgreSQL URL options {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_PG_QUERY_KEYS))})"
            )
        return DatabaseURL(
            scheme="postgres",
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            database=database,
            options=options,
        )
    raise ValueError(f"unsupported scheme {scheme!r} (use postgres:// or sqlite:///)")


@dataclass(frozen=True)
class TableNames:
    """The sockets table and its column names, all checked identifiers."""

    table: str = "sockets"
    socket: str = "socket"
    advertised: str = "advertised"
    tag: str = "tag"
    flags: str = "flags"
    tos: str = "tos"


@dataclass(frozen=True)
class SocketsMgmSettings:
    """``[sockets_mgm]``: the parameters of OpenSIPS's module, same names and defaults."""

    db_url: DatabaseURL
    tables: TableNames = TableNames()
    processes: int = 8
    max_sockets: int = 100
    db_timeout: float = 5.0


@dataclass(frozen=True)
class CoreSettings:
    """``[core]``: static sockets, the SIP application and process-wide settings."""

    listen: tuple[SocketDef, ...] = ()
    udp_workers: int = 1
    application: str = DEFAULT_APPLICATION
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    stream_idle_timeout: float = 180.0
    max_message_size: int = 65535
    log_format: str = "text"


@dataclass(frozen=True)
class MISettings:
    """``[mi]``: the admin front ends. JSON-RPC listeners are loopback only."""

    http: bool = True
    http_address: str = "127.0.0.1"
    http_port: int = 8888
    datagram_address: str = "127.0.0.1"
    datagram_port: int | None = None
    fifo: Path | None = None
    socket: Path | None = None


@dataclass(frozen=True)
class TLSSettings:
    """``[tls]``: TLS domains (filled by the TLS work)."""


@dataclass(frozen=True)
class ManholeSettings:
    """``[manhole]``: the admin shell, off by default."""

    enabled: bool = False


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one daemon."""

    sockets_mgm: SocketsMgmSettings
    core: CoreSettings = CoreSettings()
    mi: MISettings = MISettings()
    tls: TLSSettings = TLSSettings()
    manhole: ManholeSettings = ManholeSettings()
    source: str = "<defaults>"

    @property
    def mi_socket(self) -> Path:
        """Where ``sipsock-mi`` connects: ``[mi] socket`` or the state directory."""
        return self.mi.socket or self.core.state_dir / "sipsock-mi.sock"


def load_config(path: str | Path) -> Settings:
    """Read and check a configuration file."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    return parse_config(data, source=name)


def default_settings() -> Settings:
    """The settings of an empty configuration file."""
    return parse_config({}, source="<defaults>")


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    """Check a decoded TOML document and build `Settings` from it."""
    reader = _Reader(source)
    reader.only(data, "", {"sockets_mgm", "core", "mi", "tls", "manhole"}, kind="section")
    core = _read_core(reader, reader.section(data, "core"))
    return Settings(
        sockets_mgm=_read_sockets_mgm(reader, reader.section(data, "sockets_mgm"), core),
        core=core,
        mi=_read_mi(reader, reader.section(data, "mi")),
        tls=_read_tls(reader, reader.section(data, "tls")),
        manhole=_read_manhole(reader, reader.section(data, "manhole")),
        source=source,
    )


def _read_core(reader: _Reader, sec: Mapping[str, Any]) -> CoreSettings:
    reader.only(
        sec,
        "core",
        {
            "listen",
            "udp_workers",
            "application",
            "state_dir",
            "stream_idle_timeout",
            "max_message_size",
            "log_format",
        },
    )
    listen_raw = reader.get(sec, "core", "listen", list, [])
    listen: list[SocketDef] = []
    for index, entry in enumerate(listen_raw):
        try:
            listen.append(parse_static(entry, index=index))
        except SocketDefError as exc:
            raise ConfigError(reader.source, f"[core] listen[{index}]", str(exc)) from None
    seen: dict[tuple[str, str, int], int] = {}
    for index, sdef in enumerate(listen):
        key = (sdef.proto, sdef.host, sdef.port)
        if key in seen:
            raise ConfigError(
                reader.source,
                f"[core] listen[{index}]",
                f"{sdef.socket_text} is already listen[{seen[key]}]",
            )
        seen[key] = index
    application = reader.get(sec, "core", "application", str, DEFAULT_APPLICATION)
    if not re.fullmatch(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*)?", application):
        reader.fail("core", "application", f"{application!r} is not a dotted name (module:Class)")
    return CoreSettings(
        listen=tuple(listen),
        udp_workers=reader.integer(sec, "core", "udp_workers", 1, 1, 256),
        application=application,
        state_dir=Path(reader.get(sec, "core", "state_dir", str, DEFAULT_STATE_DIR)),
        stream_idle_timeout=reader.number(sec, "core", "stream_idle_timeout", 180.0, 1.0, 86400.0),
        max_message_size=reader.integer(sec, "core", "max_message_size", 65535, 1024, 65535),
        log_format=reader.choice(sec, "core", "log_format", "text", ("text", "json")),
    )


def _read_sockets_mgm(
    reader: _Reader, sec: Mapping[str, Any], core: CoreSettings
) -> SocketsMgmSettings:
    columns = ("socket", "advertised", "tag", "flags", "tos")
    reader.only(
        sec,
        "sockets_mgm",
        {"db_url", "table_name", "processes", "max_sockets", "db_timeout"}
        | {f"{c}_column" for c in columns},
    )
    default_url = f"sqlite:///{core.state_dir / 'sipsock.sqlite'}"
    raw_url = reader.get(sec, "sockets_mgm", "db_url", str, default_url)
    try:
        db_url = parse_db_url(raw_url)
    except ValueError as exc:
        reader.fail("sockets_mgm", "db_url", str(exc))
    names = {"table": reader.identifier(sec, "table_name", "sockets")}
    for column in columns:
        names[column] = reader.identifier(sec, f"{column}_column", column)
    return SocketsMgmSettings(
        db_url=db_url,
        tables=TableNames(**names),
        processes=reader.integer(sec, "sockets_mgm", "processes", 8, 1, 256),
        max_sockets=reader.integer(sec, "sockets_mgm", "max_sockets", 100, 1, 65535),
        db_timeout=reader.number(sec, "sockets_mgm", "db_timeout", 5.0, 0.1, 300.0),
    )


def _read_mi(reader: _Reader, sec: Mapping[str, Any]) -> MISettings:
    reader.only(
        sec,
        "mi",
        {
            "http",
            "http_address",
            "http_port",
            "datagram_address",
            "datagram_port",
            "fifo",
            "socket",
        },
    )
    http_address = reader.get(sec, "mi", "http_address", str, "127.0.0.1")
    datagram_address = reader.get(sec, "mi", "datagram_address", str, "127.0.0.1")
    for key, address in (("http_address", http_address), ("datagram_address", datagram_address)):
        if not _is_loopback(address):
            reader.fail(
                "mi",
                key,
                f"{address!r} is not a loopback address; the JSON-RPC MI has no "
                "authentication, so it listens on 127.0.0.1 or ::1 only "
                "(use the manhole over SSH for remote administration)",
            )
    datagram_port = reader.get(sec, "mi", "datagram_port", int, None)
    if datagram_port is not None:
        datagram_port = reader.integer(sec, "mi", "datagram_port", 0, 1, 65535)
    fifo = reader.get(sec, "mi", "fifo", str, None)
    socket = reader.get(sec, "mi", "socket", str, None)
    return MISettings(
        http=reader.get(sec, "mi", "http", bool, True),
        http_address=http_address,
        http_port=reader.integer(sec, "mi", "http_port", 8888, 1, 65535),
        datagram_address=datagram_address,
        datagram_port=datagram_port,
        fifo=Path(fifo) if fifo else None,
        socket=Path(socket) if socket else None,
    )


def _read_tls(reader: _Reader, sec: Mapping[str, Any]) -> TLSSettings:
    reader.only(sec, "tls", set())
    return TLSSettings()


def _read_manhole(reader: _Reader, sec: Mapping[str, Any]) -> ManholeSettings:
    reader.only(sec, "manhole", {"enabled"})
    return ManholeSettings(enabled=reader.get(sec, "manhole", "enabled", bool, False))


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_TYPE_NAMES: Final[Mapping[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


class _Reader:
    """Typed access to TOML values that raises `ConfigError` naming the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, section: str, key: str, reason: str) -> Any:
        where = f"[{section}] {key}" if section else key
        raise ConfigError(self.source, where, reason)

    def section(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, Mapping):
            self.fail("", f"[{name}]", "must be a table")
        return dict(value)

    def only(self, sec: Mapping[str, Any], name: str, known: set[str], kind: str = "key") -> None:
        for key in sec:
            if key not in known:
                hint = f" (known: {', '.join(sorted(known))})" if known else ""
                if kind == "section":
                    self.fail("", f"[{key}]", f"unknown section{hint}")
                self.fail(name, key, f"unknown key{hint}")

    def get(self, sec: Mapping[str, Any], name: str, key: str, kind: type, default: Any) -> Any:
        if key not in sec:
            return default
        value = sec[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            self.fail(name, key, f"must be {_TYPE_NAMES[kind]}, not {value!r}")
        return value

    def integer(
        self, sec: Mapping[str, Any], name: str, key: str, default: int, low: int, high: int
    ) -> int:
        value: int = self.get(sec, name, key, int, default)
        if not low <= value <= high:
            self.fail(name, key, f"{value} is out of range ({low}-{high})")
        return value

    def number(
        self, sec: Mapping[str, Any], name: str, key: str, default: float, low: float, high: float
    ) -> float:
        value = float(self.get(sec, name, key, float, default))
        if not low <= value <= high:
            self.fail(name, key, f"{value:g} is out of range ({low:g}-{high:g})")
        return value

    def choice(
        self, sec: Mapping[str, Any], name: str, key: str, default: str, options: tuple[str, ...]
    ) -> str:
        value: str = self.get(sec, name, key, str, default)
        if value not in options:
            self.fail(name, key, f"{value!r} is not one of {', '.join(options)}")
        return value

    def identifier(self, sec: Mapping[str, Any], key: str, default: str) -> str:
        value: str = self.get(sec, "sockets_mgm", key, str, default)
        if not IDENTIFIER_RE.fullmatch(value) or len(value) > 63:
            self.fail(
                "sockets_mgm",
                key,
                f"{value[:64]!r} is not an SQL identifier ([A-Za-z_][A-Za-z0-9_]*, "
                "at most 63 characters)",
            )
        return value
