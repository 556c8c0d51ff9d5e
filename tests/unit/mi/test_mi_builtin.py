"""The built-in commands against a fake registry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.mi.builtin import build_command_table, format_uptime, parse_flag
from sipsock.mi.commands import CommandTable, MIError


class Report:
    def as_dict(self) -> dict[str, Any]:
        return {"added": ["udp:127.0.0.1:5070"], "removed": [], "rejected": []}


class FakeRegistry:
    def __init__(self) -> None:
        self.fail_with: Exception | None = None
        self.reloads = 0

    def reload(self) -> Deferred[Report]:
        self.reloads += 1
        if self.fail_with is not None:
            return defer.fail(self.fail_with)
        return defer.succeed(Report())

    def list_sockets(self, details: bool = False) -> list[dict[str, Any]]:
        entry: dict[str, Any] = {"socket": "udp:127.0.0.1:5070", "tag": "a"}
        if details:
            entry["slot"] = 0
        return [entry]


def _table(registry: FakeRegistry, clock: Clock) -> CommandTable:
    return build_command_table(
        registry,
        clock=clock,
        started_at=1000.0,
        process_list=lambda: [{"ID": 0, "PID": 42, "Type": "control"}],
        version="1.2.3",
    )


def _result(d: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def test_every_required_command_is_registered() -> None:
    names = _table(FakeRegistry(), Clock()).names()
    for name in (
        "sockets_reload",
        "sockets_list",
        "sockets_mgm:reload",
        "sockets_mgm:list",
        "which",
        "version",
        "uptime",
        "ps",
    ):
        assert name in names


def test_reload_answers_ok_or_the_report() -> None:
    registry = FakeRegistry()
    table = _table(registry, Clock())
    assert _result(table.call("sockets_reload", None)) == "OK"
    assert _result(table.call("sockets_mgm:reload", {"report": True})) == Report().as_dict()
    assert _result(table.call("sockets_reload", ["1"])) == Report().as_dict()
    assert registry.reloads == 3


def test_failed_reload_is_error_500_naming_the_problem() -> None:
    registry = FakeRegistry()
    registry.fail_with = RuntimeError("database unreachable: connection refused")
    with pytest.raises(MIError) as info:
        _result(_table(registry, Clock()).call("sockets_reload", None))
    assert info.value.code == 500
    assert "database unreachable" in info.value.message


def test_list_passes_details() -> None:
    table = _table(FakeRegistry(), Clock())
    assert _result(table.call("sockets_list", None)) == [
        {"socket": "udp:127.0.0.1:5070", "tag": "a"}
    ]
    assert _result(table.call("sockets_mgm:list", {"details": "yes"}))[0]["slot"] == 0


def test_bad_boolean_is_invalid_params() -> None:
    with pytest.raises(MIError) as info:
        _result(_table(FakeRegistry(), Clock()).call("sockets_reload", {"report": "maybe"}))
    assert info.value.code == -32602


def test_parse_flag_words() -> None:
    assert parse_flag({"x": "TRUE"}, "x") is True
    assert parse_flag({"x": 0}, "x") is False
    assert parse_flag({}, "x", default=True) is True


def test_version_uptime_ps_which_shapes() -> None:
    clock = Clock()
    clock.advance(1042.9)
    table = _table(FakeRegistry(), clock)
    assert _result(table.call("version", None)) == {"Server": "sipsock 1.2.3"}
    uptime = _result(table.call("uptime", None))
    assert uptime == {
        "Now": time.ctime(1042.9),
        "Up since": time.ctime(1000.0),
        "Up time": "42 [sec]",
    }
    assert _result(table.call("ps", None)) == {
        "Processes": [{"ID": 0, "PID": 42, "Type": "control"}]
    }
    assert _result(table.call("which", None)) == table.names()


def test_uptime_never_negative() -> None:
    assert format_uptime(5.0, 10.0)["Up time"] == "0 [sec]"


def test_help_describes_a_command() -> None:
    table = _table(FakeRegistry(), Clock())
    assert _result(table.call("help", {"mi_cmd": "sockets_list"}))["Exported by"] == "sipsock"
    with pytest.raises(MIError) as info:
        _result(table.call("help", ["nope"]))
    assert info.value.code == 404
