"""Configuration errors name their file, key and problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipsock.config import ConfigError, default_settings, load_config, parse_config, parse_db_url


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="test.toml")
    return str(info.value)


def test_defaults_are_the_modules_own() -> None:
    settings = default_settings()
    mgm = settings.sockets_mgm
    assert (mgm.processes, mgm.max_sockets) == (8, 100)
    assert mgm.udp_balance == "shared"
    assert settings.core.udp_workers == 1
    assert settings.core.worker_timeout == 10.0
    assert mgm.tables.table == "sockets"
    assert (mgm.tables.socket, mgm.tables.advertised, mgm.tables.tag) == (
        "socket",
        "advertised",
        "tag",
    )
    assert (mgm.tables.flags, mgm.tables.tos) == ("flags", "tos")
    assert mgm.db_url.scheme == "sqlite"
    assert mgm.db_url.path == "var/sipsock.sqlite"
    assert settings.mi.http_address == "127.0.0.1"
    assert settings.mi.http_port == 8888
    assert settings.mi_socket == Path("var/sipsock-mi.sock")


def test_shipped_example_config_loads() -> None:
    settings = load_config(Path(__file__).parents[3] / "etc" / "sipsock.toml")
    assert settings.sockets_mgm.max_sockets == 100


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": {}}, "test.toml: [bogus]: unknown section"),
        ({"sockets_mgm": {"max_socket": 3}}, "test.toml: [sockets_mgm] max_socket: unknown key"),
        ({"sockets_mgm": {"processes": "8"}}, "[sockets_mgm] processes: must be an integer"),
        ({"sockets_mgm": {"processes": True}}, "[sockets_mgm] processes: must be an integer"),
        ({"sockets_mgm": {"processes": 0}}, "[sockets_mgm] processes: 0 is out of range (1-256)"),
        (
            {"sockets_mgm": {"udp_balance": "hash"}},
            "[sockets_mgm] udp_balance: 'hash' is not one of shared, reuseport",
        ),
        ({"sockets_mgm": {"udp_balance": 1}}, "[sockets_mgm] udp_balance: must be a string"),
        ({"sockets_mgm": {"max_sockets": 70000}}, "[sockets_mgm] max_sockets: 70000 is out of"),
        ({"sockets_mgm": {"table_name": "sockets; drop"}}, "[sockets_mgm] table_name: 'sockets; "),
        ({"sockets_mgm": {"tos_column": "1tos"}}, "[sockets_mgm] tos_column: '1tos' is not an"),
        ({"sockets_mgm": {"db_url": "oracle://u:p@h/db"}}, "[sockets_mgm] db_url: unsupported"),
        ({"sockets_mgm": {"db_url": "mysql://u:p@h/"}}, "[sockets_mgm] db_url: a MySQL URL needs"),
        ({"sockets_mgm": {"db_url": "nothing"}}, "[sockets_mgm] db_url: 'nothing' is not a URL"),
        ({"core": {"listen": ["bin:1.2.3.4"]}}, "[core] listen[0]: socket 'bin:1.2.3.4'"),
        ({"core": {"listen": "udp:1.2.3.4"}}, "[core] listen: must be a list"),
        (
            {"core": {"listen": ["udp:127.0.0.1", "UDP:127.0.0.1:5060"]}},
            "[core] listen[1]: udp:127.0.0.1:5060 is already listen[0]",
        ),
        ({"core": {"application": "not a name"}}, "[core] application: 'not a name' is not"),
        ({"core": {"log_format": "xml"}}, "[core] log_format: 'xml' is not one of text, json"),
        ({"core": {"worker_timeout": 0}}, "[core] worker_timeout: 0 is out of range (0.5-3600)"),
        ({"core": {"worker_timeout": "10"}}, "[core] worker_timeout: must be a number"),
        (
            {"core": {"log_level": "loud"}},
            "[core] log_level: 'loud' is not one of debug, info, warn, error, critical",
        ),
        ({"mi": {"http_address": "0.0.0.0"}}, "[mi] http_address: '0.0.0.0' is not a loopback"),
        ({"mi": {"http_port": 0}}, "[mi] http_port: 0 is out of range"),
        ({"core": []}, "[core]: must be a table"),
    ],
)
def test_errors_name_the_key_and_the_problem(data: dict[str, Any], message: str) -> None:
    assert message in error_of(data)


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[core\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_listen_accepts_strings_and_tables() -> None:
    settings = parse_config(
        {"core": {"listen": ["udp:127.0.0.1:5060", {"socket": "tcp:[::1]", "tag": "v6"}]}}
    )
    assert [s.socket_text for s in settings.core.listen] == [
        "udp:127.0.0.1:5060",
        "tcp:[::1]:5060",
    ]
    assert settings.core.listen[1].tag == "v6"


def test_state_dir_moves_the_default_database() -> None:
    settings = parse_config({"core": {"state_dir": "/srv/sipsock"}})
    assert settings.sockets_mgm.db_url.path == "/srv/sipsock/sipsock.sqlite"


def test_postgres_urls() -> None:
    url = parse_db_url("postgres://opensips:p%40ss@db.example:5433/opensips?sslmode=require")
    assert (url.scheme, url.host, url.port, url.user, url.password, url.database) == (
        "postgres",
        "db.example",
        5433,
        "opensips",
        "p@ss",
        "opensips",
    )
    assert url.options == (("sslmode", "require"),)
    assert "p@ss" not in url.display()
    assert parse_db_url("postgresql://h/db").scheme == "postgres"
    with pytest.raises(ValueError, match="needs a database name"):
        parse_db_url("postgres://h/")
    with pytest.raises(ValueError, match="unknown PostgreSQL URL options"):
        parse_db_url("postgres://h/db?evil=1")


def test_mysql_urls() -> None:
    url = parse_db_url("mysql://opensips:opensipsrw@localhost/opensips")  # the seed's default
    assert (url.scheme, url.host, url.port, url.user, url.password, url.database) == (
        "mysql",
        "localhost",
        None,
        "opensips",
        "opensipsrw",
        "opensips",
    )
    assert url.display() == "mysql://opensips:***@localhost/opensips"
    url = parse_db_url("MySQL://u:p%40ss@db.example:3307/sip?unix_socket=/run/mysqld/mysqld.sock")
    assert (url.port, url.password) == (3307, "p@ss")
    assert url.options == (("unix_socket", "/run/mysqld/mysqld.sock"),)
    assert parse_db_url("mysql://u@h/db?charset=utf8mb4").options == (("charset", "utf8mb4"),)
    with pytest.raises(ValueError, match="unknown MySQL URL options sslmode"):
        parse_db_url("mysql://h/db?sslmode=require")
    with pytest.raises(ValueError, match="unix_socket needs a path"):
        parse_db_url("mysql://h/db?unix_socket=")
    with pytest.raises(ValueError, match="is not a character set name"):
        parse_db_url("mysql://h/db?charset=utf8;DROP")
    with pytest.raises(ValueError, match="bad port"):
        parse_db_url("mysql://h:99999/db")
    with pytest.raises(ValueError, match=r"use postgres://, mysql:// or sqlite:///"):
        parse_db_url("mssql://h/db")


def test_sqlite_urls_relative_and_absolute() -> None:
    assert parse_db_url("sqlite:///var/x.db").path == "var/x.db"
    assert parse_db_url("sqlite:////tmp/x.db").path == "/tmp/x.db"
    with pytest.raises(ValueError, match="needs a file"):
        parse_db_url("sqlite:///")


def _domain(**keys: Any) -> dict[str, Any]:
    table = {"name": "edge", "certificate": "edge.crt", "private_key": "edge.key"}
    table.update(keys)
    return {"tls": {"domain": [table]}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tls": {"domain": {}}}, "test.toml: [tls] domain: must be a list"),
        ({"tls": {"domain": ["x"]}}, "[tls] domain[0]: must be a table ([[tls.domain]])"),
        ({"tls": {"cert": "x"}}, "[tls] cert: unknown key"),
        ({"tls": {"domain": [{"certificate": "a", "private_key": "b"}]}}, "[tls.domain[0]] name:"),
        (_domain(name="bad name"), "[tls.domain[0]] name: 'bad name' is not a domain name"),
        (_domain(certificate=None), "[tls.domain 'edge'] certificate: must be a string"),
        (_domain(private_key=""), "[tls.domain 'edge'] private_key: must not be empty"),
        (_domain(bogus=1), "[tls.domain 'edge'] bogus: unknown key"),
        (_domain(match_address="1.2.3.4"), "[tls.domain 'edge'] match_address: '1.2.3.4' is not"),
        (_domain(match_address="host:5061"), "[tls.domain 'edge'] match_address: 'host:5061'"),
        (_domain(match_address="::1:5061"), "match_address: '::1:5061' is not"),
        (_domain(match_address="1.2.3.4:99999"), "match_address: '1.2.3.4:99999' is not"),
        (_domain(match_address="[fe80::1%eth0]:5061"), "match_address: '[fe80::1%eth0]:5061'"),
        (_domain(match_address="[10.0.0.1]:5061"), "match_address: '[10.0.0.1]:5061' is not"),
        (_domain(match_sni=[]), "[tls.domain 'edge'] match_sni: must not be empty"),
        (_domain(match_sni=[5]), "[tls.domain 'edge'] match_sni[0]: must be a string"),
        (_domain(match_sni=["a..b"]), "[tls.domain 'edge'] match_sni[0]: 'a..b' is not a host"),
        (_domain(match_sni=["a.b", "A.B"]), "match_sni[1]: 'a.b' is listed twice"),
        (_domain(verify_client=True), "[tls.domain 'edge'] verify_client: needs ca_list"),
        (_domain(require_client_cert=True), "require_client_cert: needs ca_list"),
        (_domain(min_version="1.1"), "[tls.domain 'edge'] min_version: '1.1' is not one of"),
        (_domain(ciphers=" "), "[tls.domain 'edge'] ciphers: must not be empty"),
        ({"websocket": {"origins": []}}, "[websocket] origins: unknown key"),
        ({"websocket": {"allowed_origins": "*"}}, "[websocket] allowed_origins: must be a list"),
        (
            {"websocket": {"allowed_origins": ["phone.example.com"]}},
            "[websocket] allowed_origins[0]: 'phone.example.com' is not",
        ),
        ({"websocket": {"max_message_size": 10}}, "[websocket] max_message_size: 10 is out of"),
        ({"websocket": {"ping_timeout": 0}}, "[websocket] ping_timeout: 0 is out of range"),
        ({"websocket": {"require_origin": "yes"}}, "[websocket] require_origin: must be true"),
    ],
)
def test_tls_and_websocket_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    assert message in error_of(data)


def test_tls_domains_sharing_an_address_are_checked_together() -> None:
    def two(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
        base = {"certificate": "c", "private_key": "k"}
        return {
            "tls": {"domain": [{"name": "a", **base, **first}, {"name": "b", **base, **second}]}
        }

    assert "[tls.domain 'a'] name: 'a' is already domain[0]" in error_of(
        two({}, {"name": "a", "match_sni": ["y.test"]})
    )
    assert "match_sni: '*' is already served by domain 'a' on match_address '*'" in error_of(
        two({}, {})
    )
    assert "[tls.domain 'b'] min_version: differs from domain 'a'" in error_of(
        two({"match_sni": ["x.test"]}, {"match_sni": ["y.test"], "min_version": "1.3"})
    )
    # Different addresses: independent groups.
    settings = parse_config(two({}, {"match_address": "10.0.0.1:5061", "min_version": "1.3"}))
    assert [d.match_address for d in settings.tls.domains] == ["*", "10.0.0.1:5061"]


def test_websocket_defaults_require_an_origin_and_allow_any() -> None:
    websocket = default_settings().websocket
    assert websocket.require_origin is True
    assert websocket.allowed_origins == ("*",)
    assert (websocket.max_message_size, websocket.ping_interval) == (65535, 30.0)
    parsed = parse_config({"websocket": {"allowed_origins": ["HTTPS://Phone.Example.com/"]}})
    assert parsed.websocket.allowed_origins == ("https://phone.example.com",)
