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
    settings = load_config(Path(__file__).parents[2] / "etc" / "sipsock.toml")
    assert settings.sockets_mgm.max_sockets == 100


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": {}}, "test.toml: [bogus]: unknown section"),
        ({"sockets_mgm": {"max_socket": 3}}, "test.toml: [sockets_mgm] max_socket: unknown key"),
        ({"sockets_mgm": {"processes": "8"}}, "[sockets_mgm] processes: must be an integer"),
        ({"sockets_mgm": {"processes": True}}, "[sockets_mgm] processes: must be an integer"),
        ({"sockets_mgm": {"processes": 0}}, "[sockets_mgm] processes: 0 is out of range (1-256)"),
        ({"sockets_mgm": {"max_sockets": 70000}}, "[sockets_mgm] max_sockets: 70000 is out of"),
        ({"sockets_mgm": {"table_name": "sockets; drop"}}, "[sockets_mgm] table_name: 'sockets; "),
        ({"sockets_mgm": {"tos_column": "1tos"}}, "[sockets_mgm] tos_column: '1tos' is not an"),
        ({"sockets_mgm": {"db_url": "mysql://u:p@h/db"}}, "[sockets_mgm] db_url: unsupported"),
        ({"sockets_mgm": {"db_url": "nothing"}}, "[sockets_mgm] db_url: 'nothing' is not a URL"),
        ({"core": {"listen": ["bin:1.2.3.4"]}}, "[core] listen[0]: socket 'bin:1.2.3.4'"),
        ({"core": {"listen": "udp:1.2.3.4"}}, "[core] listen: must be a list"),
        (
            {"core": {"listen": ["udp:127.0.0.1", "UDP:127.0.0.1:5060"]}},
            "[core] listen[1]: udp:127.0.0.1:5060 is already listen[0]",
        ),
        ({"core": {"application": "not a name"}}, "[core] application: 'not a name' is not"),
        ({"core": {"log_format": "xml"}}, "[core] log_format: 'xml' is not one of text, json"),
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


def test_sqlite_urls_relative_and_absolute() -> None:
    assert parse_db_url("sqlite:///var/x.db").path == "var/x.db"
    assert parse_db_url("sqlite:////tmp/x.db").path == "/tmp/x.db"
    with pytest.raises(ValueError, match="needs a file"):
        parse_db_url("sqlite:///")
