"""``[limits]``: safe defaults, the older size keys kept working, errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipsock.config import ConfigError, LimitSettings, default_settings, load_config, parse_config


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="test.toml")
    return str(info.value)


def test_defaults_are_safe_and_documented_values() -> None:
    limits = default_settings().limits
    assert limits == LimitSettings()
    assert (limits.max_udp_message_size, limits.max_stream_message_size) == (65535, 65535)
    assert (limits.max_ws_message_size, limits.max_ws_frame_size) == (65535, 65535)
    assert (limits.max_connections_per_socket, limits.max_connections_per_ip) == (4096, 256)
    assert (limits.header_timeout, limits.max_pending_send) == (10.0, 1048576)
    assert (limits.max_outbound_connections, limits.log_interval) == (1024, 60.0)


def test_core_max_message_size_is_the_default_of_every_transport() -> None:
    limits = parse_config({"core": {"max_message_size": 4096}}).limits
    assert limits.max_udp_message_size == limits.max_stream_message_size == 4096
    assert limits.max_ws_message_size == limits.max_ws_frame_size == 4096


def test_websocket_max_message_size_is_the_default_of_the_websocket_limits() -> None:
    limits = parse_config({"websocket": {"max_message_size": 2048}}).limits
    assert (limits.max_ws_message_size, limits.max_ws_frame_size) == (2048, 2048)
    assert limits.max_stream_message_size == 65535


def test_each_transport_can_have_its_own_size() -> None:
    limits = parse_config(
        {
            "limits": {
                "max_udp_message_size": 1500,
                "max_stream_message_size": 32768,
                "max_ws_message_size": 16384,
                "max_ws_frame_size": 4096,
            }
        }
    ).limits
    assert (limits.max_udp_message_size, limits.max_stream_message_size) == (1500, 32768)
    assert (limits.max_ws_message_size, limits.max_ws_frame_size) == (16384, 4096)


def test_every_key_is_read() -> None:
    values = {
        "max_connections_per_socket": 100,
        "max_connections_per_ip": 10,
        "header_timeout": 2.5,
        "max_pending_send": 65536,
        "max_outbound_connections": 8,
        "log_interval": 5,
    }
    limits = parse_config({"limits": values}).limits
    for key, value in values.items():
        assert getattr(limits, key) == value


@pytest.mark.parametrize(
    ("limits", "core", "expected"),
    [
        ({"max_udp_message_size": 100}, {}, r"[limits] max_udp_message_size: 100 is out of range"),
        ({"max_stream_message_size": 70000}, {}, "max_stream_message_size: 70000 is out of range"),
        (
            {"max_udp_message_size": 8000},
            {"max_message_size": 4096},
            "max_udp_message_size: 8000 is above [core] max_message_size (4096)",
        ),
        (
            {"max_ws_message_size": 4096, "max_ws_frame_size": 8192},
            {},
            "max_ws_frame_size: 8192 is above max_ws_message_size (4096)",
        ),
        (
            {"max_connections_per_socket": 10, "max_connections_per_ip": 20},
            {},
            "max_connections_per_ip: 20 is above max_connections_per_socket (10)",
        ),
        ({"max_connections_per_ip": 0}, {}, "max_connections_per_ip: 0 is out of range"),
        ({"header_timeout": 0}, {}, "[limits] header_timeout: 0 is out of range"),
        ({"header_timeout": "10"}, {}, "header_timeout: must be a number"),
        ({"max_pending_send": 1000}, {}, "max_pending_send: 1000 is out of range"),
        ({"max_outbound_connections": 0}, {}, "max_outbound_connections: 0 is out of range"),
        ({"log_interval": 0.5}, {}, "log_interval: 0.5 is out of range"),
        ({"max_conections": 1}, {}, "[limits] max_conections: unknown key"),
    ],
)
def test_bad_values_name_the_key(
    limits: dict[str, Any], core: dict[str, Any], expected: str
) -> None:
    message = error_of({"limits": limits, "core": core})
    assert message.startswith("test.toml: ")
    assert expected in message


def test_shipped_example_documents_every_limit() -> None:
    path = Path(__file__).parents[3] / "etc" / "sipsock.toml"
    text = path.read_text()
    assert "[limits]" in text
    for key in LimitSettings.__dataclass_fields__:
        assert key in text, f"etc/sipsock.toml does not mention [limits] {key}"
    load_config(path)


def test_readme_documents_every_limit() -> None:
    text = (Path(__file__).parents[3] / "README.rst").read_text()
    for key in LimitSettings.__dataclass_fields__:
        assert key in text, f"README.rst does not mention [limits] {key}"


def test_udp_options_are_the_udp_listener_keywords() -> None:
    limits = LimitSettings(max_udp_message_size=2000, log_interval=5)
    assert limits.udp_options() == {"max_message_size": 2000, "log_interval": 5}
