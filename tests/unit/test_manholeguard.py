"""The manhole's login rules (sipsock.manholeguard): the throttle and the caps."""

from __future__ import annotations

import tomllib

import pytest

from sipsock.config import ConfigError, parse_config
from sipsock.manholeguard import LoginThrottle, admission_refusal


def test_throttle_refuses_an_address_after_max_failures_until_they_age_out() -> None:
    throttle = LoginThrottle(max_failures=3, window=60.0)
    for now in (0.0, 1.0, 2.0):
        assert throttle.refusal("10.0.0.1", now) is None
        throttle.failed("10.0.0.1", now)
    refusal = throttle.refusal("10.0.0.1", 3.0)
    assert refusal is not None and "3 failed logins from 10.0.0.1" in refusal
    assert "retry in 57 s" in refusal
    assert throttle.refusal("10.0.0.2", 3.0) is None
    assert throttle.refusal("10.0.0.1", 60.5) is None  # the first failure aged out


def test_throttle_counts_an_ipv6_64_as_one_address() -> None:
    throttle = LoginThrottle(max_failures=2, window=10.0)
    throttle.failed("2001:db8::1", 0.0)
    throttle.failed("2001:db8::2", 0.0)
    assert throttle.refusal("2001:db8::ffff", 1.0) is not None
    assert throttle.refusal("2001:db8:1::1", 1.0) is None


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_failures=5, window=60.0, max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(throttle._failures) == 100


def test_admission_caps_total_then_per_ip() -> None:
    caps = {"max_total": 10, "max_per_ip": 3, "ip": "127.0.0.1"}
    assert admission_refusal(total=9, from_ip=2, **caps) is None  # type: ignore[arg-type]
    total = admission_refusal(total=10, from_ip=0, **caps)  # type: ignore[arg-type]
    assert total is not None and "max_unauthenticated)" in total
    per_ip = admission_refusal(total=5, from_ip=3, **caps)  # type: ignore[arg-type]
    assert per_ip is not None and "max_unauthenticated_per_ip" in per_ip


def test_manhole_limits_have_defaults_and_are_checked() -> None:
    base = '[manhole]\nenabled = true\ntelnet_port = 2323\nusers_file = "/x"\n'
    manhole = parse_config(tomllib.loads(base)).manhole
    assert (
        manhole.login_timeout,
        manhole.max_unauthenticated,
        manhole.max_unauthenticated_per_ip,
        manhole.max_login_failures,
        manhole.login_failure_window,
    ) == (30.0, 32, 8, 5, 60.0)
    with pytest.raises(ConfigError, match=r"\[manhole\] login_timeout: 0 is out of range"):
        parse_config(tomllib.loads(base + "login_timeout = 0\n"))
    with pytest.raises(ConfigError, match=r"max_unauthenticated_per_ip: must be an integer"):
        parse_config(tomllib.loads(base + 'max_unauthenticated_per_ip = "8"\n'))
