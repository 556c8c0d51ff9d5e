"""``[auto_scaling.NAME]`` profiles and the pools that name them: every bad value names its key."""

from __future__ import annotations

from typing import Any

import pytest

from sipsock.config import ConfigError, default_settings, parse_config

PROFILE = {
    "min_processes": 1,
    "max_processes": 4,
    "scale_up_load": 80,
    "scale_up_cycles": 4,
    "scale_up_within": 5,
    "scale_down_load": 20,
    "scale_down_cycles": 10,
    "cycle": 0.5,
}


def config(profile: dict[str, Any] | None = None, **mgm: Any) -> dict[str, Any]:
    return {
        "sockets_mgm": {"auto_scaling_profile": "udp", **mgm},
        "auto_scaling": {"udp": {**PROFILE, **(profile or {})}},
    }


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="test.toml")
    return str(info.value)


def test_without_a_profile_the_pools_keep_their_fixed_size() -> None:
    settings = default_settings()
    assert settings.sockets_mgm.auto_scaling_profile is None
    assert settings.core.udp_auto_scaling_profile is None
    assert settings.sockets_mgm.processes == 8
    assert settings.auto_scaling == {}


def test_a_profile_is_read_in_shares_and_the_pool_starts_at_its_minimum() -> None:
    settings = parse_config(config())
    rule = settings.sockets_mgm.auto_scaling_profile
    assert rule is not None
    assert (rule.min_processes, rule.max_processes) == (1, 4)
    assert (rule.up_load, rule.up_cycles, rule.up_within) == (0.8, 4, 5)
    assert (rule.down_load, rule.down_cycles, rule.cycle) == (0.2, 10, 0.5)
    assert settings.sockets_mgm.processes == 1


def test_a_written_size_is_where_the_pool_starts() -> None:
    assert parse_config(config(processes=3)).sockets_mgm.processes == 3


def test_the_static_pool_names_its_profile_in_core() -> None:
    data = config()
    data["core"] = {"udp_auto_scaling_profile": "udp", "udp_workers": 2}
    core = parse_config(data).core
    assert core.udp_auto_scaling_profile is not None
    assert core.udp_workers == 2


def test_the_scale_down_clause_is_optional() -> None:
    profile = {k: v for k, v in PROFILE.items() if not k.startswith("scale_down")}
    data = {"sockets_mgm": {"auto_scaling_profile": "p"}, "auto_scaling": {"p": profile}}
    rule = parse_config(data).sockets_mgm.auto_scaling_profile
    assert rule is not None and rule.down_load is None


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        (config(processes=5), "[sockets_mgm] processes", "outside profile 'udp'"),
        (config(processes=0), "[sockets_mgm] processes", "out of range"),
        (
            {"sockets_mgm": {"auto_scaling_profile": "nope"}},
            "[sockets_mgm] auto_scaling_profile",
            "no profile 'nope'",
        ),
        (
            {"sockets_mgm": {"auto_scaling_profile": 3}},
            "[sockets_mgm] auto_scaling_profile",
            "must be a string",
        ),
        (
            {"core": {"udp_auto_scaling_profile": "x"}},
            "[core] udp_auto_scaling_profile",
            "no profile 'x'",
        ),
        (config({"min_processes": 5}), "[auto_scaling.udp] min_processes", "above max"),
        (config({"min_processes": 0}), "[auto_scaling.udp] min_processes", "out of range"),
        (config({"max_processes": 300}), "[auto_scaling.udp] max_processes", "out of range"),
        (config({"scale_up_load": 101}), "[auto_scaling.udp] scale_up_load", "out of range"),
        (config({"scale_up_load": "80%"}), "[auto_scaling.udp] scale_up_load", "integer"),
        (config({"scale_up_cycles": 6}), "[auto_scaling.udp] scale_up_cycles", "within"),
        (config({"scale_up_within": 0}), "[auto_scaling.udp] scale_up_within", "out of range"),
        (config({"scale_down_load": 80}), "[auto_scaling.udp] scale_down_load", "below"),
        (config({"scale_down_load": -1}), "[auto_scaling.udp] scale_down_load", "out of range"),
        (config({"scale_down_cycles": 0}), "[auto_scaling.udp] scale_down_cycles", "range"),
        (config({"cycle": 0}), "[auto_scaling.udp] cycle", "out of range"),
        (config({"cycle": True}), "[auto_scaling.udp] cycle", "must be a number"),
        (config({"up_to": 4}), "[auto_scaling.udp] up_to", "unknown key"),
        (
            {"auto_scaling": {"udp": {"scale_down_cycles": 3}}},
            "[auto_scaling.udp] scale_down_cycles",
            "needs scale_down_load",
        ),
        ({"auto_scaling": {"udp": 3}}, "[auto_scaling.udp]", "must be a table"),
        ({"auto_scaling": {"bad name": {}}}, "[auto_scaling.bad name]", "profile name"),
        ({"auto_scaling": 3}, "[auto_scaling]", "must be a table"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_key(
    data: dict[str, Any], key: str, reason: str
) -> None:
    message = error_of(data)
    assert message.startswith(f"test.toml: {key}: "), message
    assert reason in message


def test_the_stream_pool_names_a_profile_and_starts_at_tcp_workers_or_its_minimum() -> None:
    data = config()
    data["core"] = {"tcp_auto_scaling_profile": "udp"}
    core = parse_config(data).core
    assert core.tcp_auto_scaling_profile is not None
    assert core.tcp_auto_scaling_profile.name == "udp"
    assert core.tcp_workers == 1  # the profile's min_processes, not the default 2
    data["core"] = {"tcp_auto_scaling_profile": "udp", "tcp_workers": 3}
    assert parse_config(data).core.tcp_workers == 3
    assert default_settings().core.tcp_auto_scaling_profile is None


@pytest.mark.parametrize(
    ("core", "key", "reason"),
    [
        ({"tcp_auto_scaling_profile": "x"}, "[core] tcp_auto_scaling_profile", "no profile 'x'"),
        ({"tcp_auto_scaling_profile": 1}, "[core] tcp_auto_scaling_profile", "must be a string"),
        (
            {"tcp_auto_scaling_profile": "udp", "tcp_workers": 5},
            "[core] tcp_workers",
            "outside profile 'udp'",
        ),
        (
            {"tcp_auto_scaling_profile": "udp", "tcp_workers": 0},
            "[core] tcp_workers",
            "tcp_auto_scaling_profile",
        ),
    ],
)
def test_a_bad_stream_profile_stops_start_up_naming_the_key(
    core: dict[str, Any], key: str, reason: str
) -> None:
    data = config()
    data["core"] = core
    message = error_of(data)
    assert message.startswith(f"test.toml: {key}: "), message
    assert reason in message
