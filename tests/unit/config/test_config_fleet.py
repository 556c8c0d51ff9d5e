"""``[manhole]``, ``auto_reload`` and the fleet keys of ``[sockets_mgm]``: values and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipsock.config import ConfigError, parse_config


def manhole(**keys: Any) -> dict[str, Any]:
    return {"manhole": {"enabled": True, "users_file": "users", **keys}}


def test_manhole_defaults_to_off_and_loopback() -> None:
    settings = parse_config({}).manhole
    assert not settings.enabled
    assert settings.address == "127.0.0.1"
    on = parse_config(manhole(ssh_port=2222, telnet_port=2223)).manhole
    assert (on.ssh_port, on.telnet_port, on.users_file) == (2222, 2223, Path("users"))


@pytest.mark.parametrize(
    ("section", "key", "reason"),
    [
        (manhole(), "[manhole] enabled", "needs ssh_port or telnet_port"),
        ({"manhole": {"enabled": True, "ssh_port": 2222}}, "[manhole] users_file", "missing"),
        (manhole(ssh_port=2222, address="0.0.0.0"), "[manhole] address", "allow_remote"),
        (
            manhole(telnet_port=2223, address="10.0.0.1", allow_remote=True),
            "[manhole] telnet_port",
            "clear text",
        ),
        (manhole(ssh_port=2222, address="example.org"), "[manhole] address", "not an IP"),
        (manhole(ssh_port=70000), "[manhole] ssh_port", "out of range"),
        (manhole(ssh_port=2222, shell="bash"), "[manhole] shell", "unknown key"),
    ],
)
def test_manhole_errors_name_the_key(section: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(section, source="f.toml")
    assert raised.value.key == key
    assert reason in raised.value.reason
    assert "\n" not in str(raised.value)


def test_remote_manhole_over_ssh_needs_allow_remote() -> None:
    settings = parse_config(manhole(ssh_port=2222, address="::", allow_remote=True)).manhole
    assert settings.address == "::"
    assert settings.allow_remote


def test_auto_reload_and_fleet_keys() -> None:
    sec = parse_config(
        {
            "sockets_mgm": {
                "auto_reload": True,
                "auto_reload_debounce": 0.25,
                "sqlite_poll_interval": 2,
                "node_column": "node",
                "node": "edge-1",
            }
        }
    ).sockets_mgm
    assert sec.auto_reload and sec.auto_reload_debounce == 0.25
    assert sec.sqlite_poll_interval == 2.0
    assert (sec.tables.node, sec.node) == ("node", "edge-1")
    plain = parse_config({}).sockets_mgm
    assert (plain.auto_reload, plain.tables.node, plain.node) == (False, None, None)


@pytest.mark.parametrize(
    ("keys", "key", "reason"),
    [
        ({"node": "a"}, "[sockets_mgm] node", "needs node_column"),
        ({"node_column": "node"}, "[sockets_mgm] node_column", "needs node"),
        ({"node_column": "no de", "node": "a"}, "[sockets_mgm] node_column", "identifier"),
        ({"node_column": "node", "node": "a b"}, "[sockets_mgm] node", "not a node name"),
        (
            {"auto_reload": True, "db_url": "mysql://u:p@127.0.0.1/db"},
            "[sockets_mgm] auto_reload",
            "PostgreSQL",
        ),
        ({"auto_reload_debounce": -1}, "[sockets_mgm] auto_reload_debounce", "out of range"),
        ({"sqlite_poll_interval": 0}, "[sockets_mgm] sqlite_poll_interval", "out of range"),
    ],
)
def test_fleet_and_reload_errors_name_the_key(keys: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"sockets_mgm": keys})
    assert raised.value.key == key
    assert reason in raised.value.reason
