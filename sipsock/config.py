"""The configuration file (TOML) turned into frozen settings.

Every key is checked at load: an unknown section or key, a wrong type or an
out-of-range number raises `ConfigError` naming the file, the key and the
problem. Relative paths are taken from the working directory, as twistd does.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from sipsock.addresses import AddressError, join_host_port, normal_ip, parse_ip, split_host_port
from sipsock.proxyrules import ProxyRoute, RouteError, parse_routes
from sipsock.sockdef import SocketDef, SocketDefError, parse_static

IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_STATE_DIR: Final = "var"
DEFAULT_APPLICATION: Final = "sipsock.apps:Responder"
#: How the UDP workers share a socket: one descriptor read by all, or one
#: SO_REUSEPORT member each (README "UDP worker pool").
UDP_BALANCE_MODES: Final = ("shared", "reuseport")
DEFAULT_UDP_BALANCE: Final = "shared"
_PG_QUERY_KEYS: Final = frozenset(
    {"host", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout"}
)
_MYSQL_QUERY_KEYS: Final = frozenset({"unix_socket", "charset"})


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


#: ``[core] udp_receive_buffer``: bytes of kernel receive buffer per UDP socket
#: (0 keeps the kernel default, about 208 KiB, which drops datagrams at a few
#: thousand OPTIONS per second).
DEFAULT_UDP_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
MAX_UDP_RECEIVE_BUFFER: Final = 1024 * 1024 * 1024


#: ``[core] log_level`` values, most verbose first (Twisted's level names).
LOG_LEVELS: Final = ("debug", "info", "warn", "error", "critical")


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
    log_level: str = "info"
    udp_receive_buffer: int = DEFAULT_UDP_RECEIVE_BUFFER
    #: Seconds a UDP worker has to answer each command of the control process;
    #: one that does not is killed and replaced.
    worker_timeout: float = 10.0


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


TLS_VERSIONS: Final = ("1.2", "1.3")
_DOMAIN_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SNI_RE: Final = re.compile(r"(\*\.)?(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
_ORIGIN_RE: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\*|(\*\.)?[a-z0-9.-]+|\[[0-9a-f:.]+\])"
    r"(:(?P<port>[0-9]{1,5}|\*))?"
)


@dataclass(frozen=True)
class TLSDomainSettings:
    """One ``[[tls.domain]]`` table: a certificate and the sockets and names it serves.

    ``match_address`` is ``"*"`` or a canonical ``ip:port`` (IPv6 in
    brackets); ``match_sni`` holds lower-case names, ``"*"`` (any name, and
    clients that send none) or ``"*.suffix"``. ``verify_server`` applies to
    outbound connections from the domain's sockets.
    """

    name: str
    certificate: Path
    private_key: Path
    match_address: str = "*"
    match_sni: tuple[str, ...] = ("*",)
    ca_list: Path | None = None
    verify_client: bool = False
    require_client_cert: bool = False
    verify_server: bool = True
    min_version: str = "1.2"
    ciphers: str | None = None


@dataclass(frozen=True)
class TLSSettings:
    """``[tls]``: the TLS domains, in the order of the file."""

    domains: tuple[TLSDomainSettings, ...] = ()


@dataclass(frozen=True)
class WebSocketSettings:
    """``[websocket]``: WS and WSS sockets (RFC 7118).

    ``allowed_origins`` holds ``"*"`` or ``scheme://host[:port]`` patterns
    (``*.`` before the host and ``*`` as the port are wildcards);
    ``ping_interval`` 0 turns the keep-alive pings off.
    """

    require_origin: bool = True
    allowed_origins: tuple[str, ...] = ("*",)
    max_message_size: int = 65535
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    handshake_timeout: float = 10.0


@dataclass(frozen=True)
class LimitSettings:
    """``[limits]``: what one peer may cost (README "Limits").

    Message sizes are per transport: UDP, stream (TCP and TLS) and WebSocket
    (WS and WSS: the whole message and each frame); each defaults to
    ``[core] max_message_size`` (WebSocket: also ``[websocket]
    max_message_size``) and may not exceed it. Connection caps count the
    accepted connections of one stream socket, in all and from one remote
    IP. ``header_timeout`` cuts a stream connection that has not sent a whole
    first message, or not finished a header section it started, within that
    many seconds. ``max_pending_send`` is the output (bytes) a connection
    may have queued before it is aborted; ``max_outbound_connections`` the
    connections one socket may open; ``log_interval`` the seconds between two
    log lines about the same limit of the same socket.
    """

    max_udp_message_size: int = 65535
    max_stream_message_size: int = 65535
    max_ws_message_size: int = 65535
    max_ws_frame_size: int = 65535
    max_connections_per_socket: int = 4096
    max_connections_per_ip: int = 256
    header_timeout: float = 10.0
    max_pending_send: int = 1048576
    max_outbound_connections: int = 1024
    log_interval: float = 60.0

    def udp_options(self) -> dict[str, Any]:
        """The keyword arguments of a UDP listener (`sipsock.transport.udp.UdpListener`)."""
        return {"max_message_size": self.max_udp_message_size, "log_interval": self.log_interval}


@dataclass(frozen=True)
class ManholeSettings:
    """``[manhole]``: the admin shell, off by default (see `sipsock.manhole`).

    At least one of ``ssh_port`` / ``telnet_port`` when enabled, a
    ``users_file`` always; telnet only on a loopback ``address``; a
    non-loopback address needs ``allow_remote`` and SSH only. Before a login
    succeeds a connection has ``login_timeout`` seconds, and counts against
    ``max_unauthenticated`` (in all) and ``max_unauthenticated_per_ip``; an
    address with ``max_login_failures`` failed logins within
    ``login_failure_window`` seconds is refused until they age out.
    """

    enabled: bool = False
    address: str = "127.0.0.1"
    ssh_port: int | None = None
    telnet_port: int | None = None
    users_file: Path | None = None
    allow_remote: bool = False
    login_timeout: float = 30.0
    max_unauthenticated: int = 32
    max_unauthenticated_per_ip: int = 8
    max_login_failures: int = 5
    login_failure_window: float = 60.0


@dataclass(frozen=True)
class ProxySettings:
    """``[proxy]``: the built-in stateless proxy (``sipsock.apps:StatelessProxy``).

    ``routes`` come from ``[[proxy.route]]`` tables, numbered from 1 in
    messages; ``secret`` salts the proxy's branches (None: derived per
    installation); ``configured`` says whether the file has a ``[proxy]``.
    """

    routes: tuple[ProxyRoute, ...] = ()
    record_route: bool = True
    secret: str | None = None
    configured: bool = False


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one daemon."""

    sockets_mgm: SocketsMgmSettings
    core: CoreSettings = CoreSettings()
    mi: MISettings = MISettings()
    tls: TLSSettings = TLSSettings()
    websocket: WebSocketSettings = WebSocketSettings()
    manhole: ManholeSettings = ManholeSettings()
    limits: LimitSettings = LimitSettings()
    application: Mapping[str, Any] = field(default_factory=dict)
    proxy: ProxySettings = ProxySettings()
    source: str = "<defaults>"
    #: The TOML text these settings were read from (None: not read from a file);
    #: UDP workers are handed it, frozen, rather than re-reading the file.
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def mi_socket(self) -> Path:
        """Where ``sipsock-mi`` connects: ``[mi] socket`` or the state directory."""
        return self.mi.socket or self.core.state_dir / "sipsock-mi.sock"


def load_config(path: str | Path) -> Settings:
    """Read and check a configuration file."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: not UTF-8 ({exc.reason})") from None
    return parse_config_text(text, source=name)


def parse_config_text(text: str, *, source: str) -> Settings:
    """Check the TOML ``text`` of a configuration file read from ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return replace(parse_config(data, source=source), text=text)


def default_settings() -> Settings:
    """The settings of an empty configuration file."""
    return parse_config({}, source="<defaults>")


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Settings:
    """Check a decoded TOML document and build `Settings` from it."""
    reader = _Reader(source)
    reader.only(
        data,
        "",
        {
            "sockets_mgm",
            "core",
            "mi",
            "tls",
            "websocket",
            "manhole",
            "limits",
            "application",
            "proxy",
        },
        kind="section",
    )
    core = _read_core(reader, reader.section(data, "core"))
    websocket = _read_websocket(reader, reader.section(data, "websocket"))
    return Settings(
        sockets_mgm=_read_sockets_mgm(reader, reader.section(data, "sockets_mgm"), core),
        core=core,
        mi=_read_mi(reader, reader.section(data, "mi")),
        tls=_read_tls(reader, reader.section(data, "tls")),
        websocket=websocket,
        manhole=_read_manhole(reader, reader.section(data, "manhole")),
        limits=_read_limits(reader, reader.section(data, "limits"), core, websocket),
        # Options of the SIP application, checked by the application itself.
        application=reader.section(data, "application"),
        proxy=_read_proxy(reader, reader.section(data, "proxy"), configured="proxy" in data),
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
            "log_level",
            "udp_receive_buffer",
            "worker_timeout",
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
        log_level=reader.choice(sec, "core", "log_level", "info", LOG_LEVELS),
        udp_receive_buffer=reader.integer(
            sec, "core", "udp_receive_buffer", DEFAULT_UDP_RECEIVE_BUFFER, 0, MAX_UDP_RECEIVE_BUFFER
        ),
        worker_timeout=reader.number(sec, "core", "worker_timeout", 10.0, 0.5, 3600.0),
    )


def _read_sockets_mgm(
    reader: _Reader, sec: Mapping[str, Any], core: CoreSettings
) -> SocketsMgmSettings:
    columns = ("socket", "advertised", "tag", "flags", "tos")
    reader.only(
        sec,
        "sockets_mgm",
        {"db_url", "table_name", "processes", "max_sockets", "db_timeout", "udp_balance"}
        | {f"{c}_column" for c in columns}
        | _FLEET_AND_RELOAD_KEYS,
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
    fleet_and_reload = _read_fleet_and_reload(reader, sec, db_url)
    return SocketsMgmSettings(
        db_url=db_url,
        tables=TableNames(**names, node=fleet_and_reload.pop("node_column")),
        **fleet_and_reload,
        processes=reader.integer(sec, "sockets_mgm", "processes", 8, 1, 256),
        max_sockets=reader.integer(sec, "sockets_mgm", "max_sockets", 100, 1, 65535),
        db_timeout=reader.number(sec, "sockets_mgm", "db_timeout", 5.0, 0.1, 300.0),
        udp_balance=reader.choice(
            sec, "sockets_mgm", "udp_balance", DEFAULT_UDP_BALANCE, UDP_BALANCE_MODES
        ),
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
    reader.only(sec, "tls", {"domain"})
    raw = reader.get(sec, "tls", "domain", list, [])
    domains: list[TLSDomainSettings] = []
    for index, table in enumerate(raw):
        if not isinstance(table, Mapping):
            reader.fail(
                "tls", f"domain[{index}]", f"must be a table ([[tls.domain]]), not {table!r}"
            )
        domains.append(_read_tls_domain(reader, table, index))
    _check_tls_domains(reader, domains)
    return TLSSettings(domains=tuple(domains))


_TLS_DOMAIN_KEYS: Final = {
    "name",
    "match_address",
    "match_sni",
    "certificate",
    "private_key",
    "ca_list",
    "verify_client",
    "require_client_cert",
    "verify_server",
    "min_version",
    "ciphers",
}


def _read_tls_domain(reader: _Reader, table: Mapping[str, Any], index: int) -> TLSDomainSettings:
    name = table.get("name")
    named = isinstance(name, str) and _DOMAIN_NAME_RE.fullmatch(name)
    sec = f"tls.domain {name!r}" if named else f"tls.domain[{index}]"
    reader.only(table, sec, _TLS_DOMAIN_KEYS)
    if "name" not in table:
        reader.fail(sec, "name", "missing (every [[tls.domain]] needs a name)")
    name = reader.get(table, sec, "name", str, "")
    if not _DOMAIN_NAME_RE.fullmatch(name):
        reader.fail(sec, "name", f"{name[:70]!r} is not a domain name ([A-Za-z0-9_.-], 1-64)")
    paths: dict[str, Path] = {}
    for key in ("certificate", "private_key"):
        if key not in table:
            reader.fail(sec, key, "missing (a PEM file)")
        value = reader.get(table, sec, key, str, "")
        if not value:
            reader.fail(sec, key, "must not be empty")
        paths[key] = Path(value)
    ca_text = reader.get(table, sec, "ca_list", str, None)
    ca_list = Path(ca_text) if ca_text else None
    verify_client = reader.get(table, sec, "verify_client", bool, False)
    require = reader.get(table, sec, "require_client_cert", bool, False)
    if require:
        verify_client = True
    if verify_client and ca_list is None:
        key = "require_client_cert" if require else "verify_client"
        reader.fail(
            sec, key, "needs ca_list (the CA certificates client certificates must chain to)"
        )
    ciphers = reader.get(table, sec, "ciphers", str, None)
    if ciphers is not None and not ciphers.strip():
        reader.fail(sec, "ciphers", "must not be empty (leave it out for the default)")
    return TLSDomainSettings(
        name=name,
        certificate=paths["certificate"],
        private_key=paths["private_key"],
        match_address=_read_match_address(reader, table, sec),
        match_sni=_read_match_sni(reader, table, sec),
        ca_list=ca_list,
        verify_client=verify_client,
        require_client_cert=require,
        verify_server=reader.get(table, sec, "verify_server", bool, True),
        min_version=reader.choice(table, sec, "min_version", "1.2", TLS_VERSIONS),
        ciphers=ciphers,
    )


def _read_match_address(reader: _Reader, table: Mapping[str, Any], sec: str) -> str:
    raw: str = reader.get(table, sec, "match_address", str, "*")
    text = raw.strip()
    if text == "*":
        return text
    try:
        host, port = split_host_port(text)
    except AddressError:
        host, port = "", None
    address = normal_ip(host)
    if address is None or port is None:
        reader.fail(
            sec, "match_address", f'{text[:70]!r} is not "*" nor ip:port (IPv6 as [addr]:port)'
        )
    assert address is not None and port is not None
    return join_host_port(address, port)


def _read_match_sni(reader: _Reader, table: Mapping[str, Any], sec: str) -> tuple[str, ...]:
    raw = reader.get(table, sec, "match_sni", list, ["*"])
    if not raw:
        reader.fail(sec, "match_sni", 'must not be empty (use ["*"] for any name)')
    names: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            reader.fail(sec, f"match_sni[{index}]", f"must be a string, not {item!r}")
        name = item.strip().lower().rstrip(".")
        if name != "*" and (len(name) > 253 or not _SNI_RE.fullmatch(name)):
            reader.fail(
                sec, f"match_sni[{index}]", f"{item[:70]!r} is not a host name, *.name or *"
            )
        if name in names:
            reader.fail(sec, f"match_sni[{index}]", f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def _check_tls_domains(reader: _Reader, domains: list[TLSDomainSettings]) -> None:
    """Names unique; within one match_address, SNI names unique and one TLS policy.

    OpenSSL picks the protocol version and the cipher before the server name
    is known, so domains sharing an address must agree on both.
    """
    seen: dict[str, int] = {}
    first_of_group: dict[str, TLSDomainSettings] = {}
    sni_owner: dict[tuple[str, str], str] = {}
    for index, domain in enumerate(domains):
        sec = f"tls.domain {domain.name!r}"
        if domain.name in seen:
            reader.fail(sec, "name", f"{domain.name!r} is already domain[{seen[domain.name]}]")
        seen[domain.name] = index
        first = first_of_group.setdefault(domain.match_address, domain)
        for key in ("min_version", "ciphers"):
            if getattr(domain, key) != getattr(first, key):
                reader.fail(
                    sec,
                    key,
                    f"differs from domain {first.name!r} on the same match_address "
                    f"{domain.match_address!r} (OpenSSL settles the {key.replace('_', ' ')} "
                    "before the server name is known)",
                )
        for name in domain.match_sni:
            owner = sni_owner.setdefault((domain.match_address, name), domain.name)
            if owner != domain.name:
                reader.fail(
                    sec,
                    "match_sni",
                    f"{name!r} is already served by domain {owner!r} on match_address "
                    f"{domain.match_address!r}",
                )


def _read_websocket(reader: _Reader, sec: Mapping[str, Any]) -> WebSocketSettings:
    reader.only(
        sec,
        "websocket",
        {
            "require_origin",
            "allowed_origins",
            "max_message_size",
            "ping_interval",
            "ping_timeout",
            "handshake_timeout",
        },
    )
    raw = reader.get(sec, "websocket", "allowed_origins", list, ["*"])
    origins: list[str] = []
    for index, item in enumerate(raw):
        key = f"allowed_origins[{index}]"
        if not isinstance(item, str):
            reader.fail("websocket", key, f"must be a string, not {item!r}")
        origin = item.strip().lower().rstrip("/")
        if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
            reader.fail(
                "websocket",
                key,
                f'{item[:70]!r} is not "*" nor scheme://host[:port] (e.g. https://phone.example.com)',
            )
        origins.append(origin)
    return WebSocketSettings(
        require_origin=reader.get(sec, "websocket", "require_origin", bool, True),
        allowed_origins=tuple(origins),
        max_message_size=reader.integer(sec, "websocket", "max_message_size", 65535, 1024, 65535),
        ping_interval=reader.number(sec, "websocket", "ping_interval", 30.0, 0.0, 3600.0),
        ping_timeout=reader.number(sec, "websocket", "ping_timeout", 10.0, 1.0, 600.0),
        handshake_timeout=reader.number(sec, "websocket", "handshake_timeout", 10.0, 1.0, 600.0),
    )


def _read_limits(
    reader: _Reader, sec: Mapping[str, Any], core: CoreSettings, websocket: WebSocketSettings
) -> LimitSettings:
    """``[limits]``; message sizes default to, and may not exceed, the older size keys."""
    reader.only(sec, "limits", {f.name for f in fields(LimitSettings)})
    largest = core.max_message_size
    ws_default = min(largest, websocket.max_message_size)
    sizes: dict[str, int] = {}
    for key, default in (
        ("max_udp_message_size", largest),
        ("max_stream_message_size", largest),
        ("max_ws_message_size", ws_default),
    ):
        sizes[key] = reader.integer(sec, "limits", key, default, 1024, 65535)
        if sizes[key] > largest:
            reader.fail(
                "limits",
                key,
                f"{sizes[key]} is above [core] max_message_size ({largest}), the largest "
                "message parsed: raise that too",
            )
    frame = reader.integer(
        sec, "limits", "max_ws_frame_size", sizes["max_ws_message_size"], 125, 65535
    )
    if frame > sizes["max_ws_message_size"]:
        reader.fail(
            "limits",
            "max_ws_frame_size",
            f"{frame} is above max_ws_message_size ({sizes['max_ws_message_size']}): "
            "a frame is part of a message",
        )
    per_socket = reader.integer(sec, "limits", "max_connections_per_socket", 4096, 1, 1000000)
    per_ip = reader.integer(sec, "limits", "max_connections_per_ip", 256, 1, 1000000)
    if per_ip > per_socket:
        reader.fail(
            "limits",
            "max_connections_per_ip",
            f"{per_ip} is above max_connections_per_socket ({per_socket})",
        )
    return LimitSettings(
        **sizes,
        max_ws_frame_size=frame,
        max_connections_per_socket=per_socket,
        max_connections_per_ip=per_ip,
        header_timeout=reader.number(sec, "limits", "header_timeout", 10.0, 0.1, 3600.0),
        max_pending_send=reader.integer(sec, "limits", "max_pending_send", 1048576, 65536, 1 << 30),
        max_outbound_connections=reader.integer(
            sec, "limits", "max_outbound_connections", 1024, 1, 1000000
        ),
        log_interval=reader.number(sec, "limits", "log_interval", 60.0, 1.0, 86400.0),
    )


def _read_proxy(reader: _Reader, sec: Mapping[str, Any], *, configured: bool) -> ProxySettings:
    reader.only(sec, "proxy", {"route", "record_route", "secret"})
    tables = reader.get(sec, "proxy", "route", list, [])
    try:
        routes = parse_routes(tables)
    except RouteError as error:
        raise ConfigError(reader.source, f"[[proxy.route]] {error.key}", error.reason) from None
    secret = reader.get(sec, "proxy", "secret", str, None)
    if secret is not None and not secret:
        reader.fail("proxy", "secret", "must not be empty (leave it out to have one derived)")
    return ProxySettings(
        routes=routes,
        record_route=reader.get(sec, "proxy", "record_route", bool, True),
        secret=secret,
        configured=configured,
    )


_FLEET_AND_RELOAD_KEYS: Final = frozenset(
    {"auto_reload", "auto_reload_debounce", "sqlite_poll_interval", "node_column", "node"}
)
_NODE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _read_fleet_and_reload(
    reader: _Reader, sec: Mapping[str, Any], db_url: DatabaseURL
) -> dict[str, Any]:
    """``auto_reload*``, ``sqlite_poll_interval``, ``node_column`` and ``node`` of [sockets_mgm]."""
    auto_reload = reader.get(sec, "sockets_mgm", "auto_reload", bool, False)
    if auto_reload and db_url.scheme not in ("postgres", "sqlite"):
        reader.fail(
            "sockets_mgm",
            "auto_reload",
            f"needs PostgreSQL (LISTEN/NOTIFY) or SQLite (polling), not {db_url.scheme}: "
            "call sockets_reload after each change instead",
        )
    node_column = None
    if "node_column" in sec:
        node_column = reader.identifier(sec, "node_column", "node")
    node = reader.get(sec, "sockets_mgm", "node", str, None)
    if node is not None and not _NODE_RE.fullmatch(node):
        reader.fail(
            "sockets_mgm", "node", f"{node[:70]!r} is not a node name ([A-Za-z0-9_.:-], 1-64)"
        )
    if node_column is not None and node is None:
        reader.fail("sockets_mgm", "node_column", "needs node (this daemon's name in the fleet)")
    if node is not None and node_column is None:
        reader.fail("sockets_mgm", "node", "needs node_column (the column holding node names)")
    return {
        "auto_reload": auto_reload,
        "auto_reload_debounce": reader.number(
            sec, "sockets_mgm", "auto_reload_debounce", 0.5, 0.0, 60.0
        ),
        "sqlite_poll_interval": reader.number(
            sec, "sockets_mgm", "sqlite_poll_interval", 1.0, 0.05, 3600.0
        ),
        "node_column": node_column,
        "node": node,
    }


def _read_manhole(reader: _Reader, sec: Mapping[str, Any]) -> ManholeSettings:
    reader.only(
        sec,
        "manhole",
        {
            "enabled",
            "address",
            "ssh_port",
            "telnet_port",
            "users_file",
            "allow_remote",
            "login_timeout",
            "max_unauthenticated",
            "max_unauthenticated_per_ip",
            "max_login_failures",
            "login_failure_window",
        },
    )
    enabled = reader.get(sec, "manhole", "enabled", bool, False)
    address = reader.get(sec, "manhole", "address", str, "127.0.0.1")
    ip = None if address.startswith("[") else parse_ip(address, zone="keep")
    if ip is None:
        reader.fail("manhole", "address", f"{address[:70]!r} is not an IP address")
    assert ip is not None
    ports: dict[str, int | None] = {}
    for key in ("ssh_port", "telnet_port"):
        ports[key] = None
        if key in sec:
            ports[key] = reader.integer(sec, "manhole", key, 0, 1, 65535)
    users = reader.get(sec, "manhole", "users_file", str, None)
    allow_remote = reader.get(sec, "manhole", "allow_remote", bool, False)
    if enabled:
        if ports["ssh_port"] is None and ports["telnet_port"] is None:
            reader.fail("manhole", "enabled", "needs ssh_port or telnet_port (or both)")
        if not users:
            reader.fail(
                "manhole",
                "users_file",
                "missing: the manhole always asks for a password (a file of name:password "
                "lines, the password bcrypt-hashed or plain)",
            )
        if not ip.is_loopback:
            if ports["telnet_port"] is not None:
                reader.fail(
                    "manhole",
                    "telnet_port",
                    f"telnet sends passwords in clear text: only on a loopback address, "
                    f"not {address} (use ssh_port)",
                )
            if not allow_remote:
                reader.fail(
                    "manhole",
                    "address",
                    f"{address} is not a loopback address: set allow_remote = true to "
                    "offer the manhole (SSH only) beyond this host",
                )
    return ManholeSettings(
        enabled=enabled,
        address=ip.compressed,
        ssh_port=ports["ssh_port"],
        telnet_port=ports["telnet_port"],
        users_file=Path(users) if users else None,
        allow_remote=allow_remote,
        login_timeout=reader.number(sec, "manhole", "login_timeout", 30.0, 1.0, 3600.0),
        max_unauthenticated=reader.integer(sec, "manhole", "max_unauthenticated", 32, 1, 10000),
        max_unauthenticated_per_ip=reader.integer(
            sec, "manhole", "max_unauthenticated_per_ip", 8, 1, 10000
        ),
        max_login_failures=reader.integer(sec, "manhole", "max_login_failures", 5, 1, 1000),
        login_failure_window=reader.number(
            sec, "manhole", "login_failure_window", 60.0, 1.0, 86400.0
        ),
    )


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    # A bare address: the listeners are given it as written (no brackets).
    ip = None if address.startswith("[") else parse_ip(address, zone="keep")
    return ip is not None and ip.is_loopback


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
