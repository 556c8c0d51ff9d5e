"""``[proxy]`` in the configuration, and how the daemon hands it to the proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipsock.apps import ApplicationError, StatelessProxy, load_application
from sipsock.apps.loader import PROXY_APPLICATIONS, application_options
from sipsock.apps.proxyrules import Destination
from sipsock.config import ConfigError, load_config, parse_config

ROUTES = [
    {"in_tag": "a", "destination": "sip:127.0.0.1:5080;transport=tcp", "out_tag": "b"},
    {"in_tag": "b", "destination": "request-uri", "out_tag": "a"},
]


def config(proxy: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"core": {"application": "sipsock.apps:StatelessProxy"}, **sections}
    if proxy is not None:
        data["proxy"] = proxy
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="test.toml")
    return str(info.value)


def test_routes_are_read_in_order() -> None:
    settings = parse_config(config({"route": ROUTES, "record_route": False, "secret": "x"}))
    proxy = settings.proxy
    assert [route.number for route in proxy.routes] == [1, 2]
    assert proxy.routes[0].destination == Destination("127.0.0.1", 5080, "tcp")
    assert proxy.routes[1].destination is None
    assert (proxy.record_route, proxy.secret, proxy.configured) == (False, "x", True)


def test_no_proxy_section_means_defaults() -> None:
    proxy = parse_config({}).proxy
    assert (proxy.routes, proxy.record_route, proxy.secret, proxy.configured) == (
        (),
        True,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        (
            {"route": [ROUTES[0], {"destination": "request-uri", "out_tag": "b c"}]},
            "test.toml: [[proxy.route]] 2: out_tag: 'b c' is not a tag",
        ),
        ({"route": [{"in_tag": "a"}]}, "test.toml: [[proxy.route]] 1: destination: missing"),
        (
            {"route": [{"destination": "sip:h;transport=sctp"}]},
            "test.toml: [[proxy.route]] 1: destination: transport 'sctp'",
        ),
        (
            {"route": [{"destination": "x", "when": 1}]},
            "test.toml: [[proxy.route]] 1: when: unknown key",
        ),
        ({"route": "sip:x"}, "test.toml: [proxy] route: must be a list"),
        ({"record_route": "yes"}, "test.toml: [proxy] record_route: must be true or false"),
        ({"secret": ""}, "test.toml: [proxy] secret: must not be empty"),
        ({"routes": []}, "test.toml: [proxy] routes: unknown key"),
        (
            {"route": [{"destination": "request-uri", "uri_host": "fe80::1%eth0"}]},
            "test.toml: [[proxy.route]] 1: uri_host: 'fe80::1%eth0' is not a host name",
        ),
    ],
)
def test_errors_name_the_key(proxy: dict[str, Any], message: str) -> None:
    assert error_of(config(proxy)).startswith(message)


def test_the_proxy_gets_the_routes_and_a_secret_shared_by_its_processes(tmp_path: Path) -> None:
    data = config({"route": ROUTES}, core={"application": "sipsock.apps:StatelessProxy"})
    data["core"]["state_dir"] = str(tmp_path)
    settings = parse_config(data)
    options = application_options(settings)
    assert options["routes"] == settings.proxy.routes
    assert options["record_route"] is True
    assert options["secret"] == application_options(settings)["secret"]
    other = parse_config({**data, "core": {**data["core"], "state_dir": str(tmp_path / "x")}})
    assert application_options(other)["secret"] != options["secret"]
    app = load_application(settings.core.application, options)
    assert isinstance(app, StatelessProxy)
    assert app.routes == settings.proxy.routes


def test_a_configured_secret_is_used() -> None:
    options = application_options(parse_config(config({"secret": "shared"})))
    assert options["secret"] == "shared"


def test_every_spelling_of_the_proxy_gets_its_options() -> None:
    for name in PROXY_APPLICATIONS:
        settings = parse_config({"core": {"application": name}})
        assert "routes" in application_options(settings)
        assert isinstance(load_application(name, application_options(settings)), StatelessProxy)


def test_other_applications_get_application_only() -> None:
    settings = parse_config({"application": {"status": 480}})
    assert application_options(settings) == {"status": 480}


def test_routes_in_application_are_refused_for_the_proxy() -> None:
    settings = parse_config(config({}, application={"routes": []}))
    with pytest.raises(ApplicationError, match=r"\[application\] routes: set it in \[proxy\]"):
        application_options(settings)


def test_the_shipped_example_config_loads() -> None:
    settings = load_config(Path(__file__).parents[3] / "etc" / "sipsock.toml")
    assert settings.proxy.configured is False
