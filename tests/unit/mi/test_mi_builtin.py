"""The built-in commands against a fake registry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.mi.builtin import build_command_table, format_uptime, parse_flag
from sipsock.mi.commands import CommandTable, MIError
from sipsock.registry import SocketEntry
from sipsock.reloadplan import ReloadReport
from sipsock.sockdef import parse_row
from sipsock.testing import FakeRegistry

REPORT = ReloadReport(added=["udp:127.0.0.1:5070"])


def one_socket() -> FakeRegistry:
    """A registry with one socket (slot 0, tag a) whose reload adds it."""
    entry = SocketEntry(parse_row(1, "udp:127.0.0.1:5070", tag="a"), 0)
    return FakeRegistry(entries=[entry], report=REPORT)


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
    names = _table(one_socket(), Clock()).names()
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
    registry = one_socket()
    table = _table(registry, Clock())
    assert _result(table.call("sockets_reload", None)) == "OK"
    assert _result(table.call("sockets_mgm:reload", {"report": True})) == REPORT.as_dict()
    assert _result(table.call("sockets_reload", ["1"])) == REPORT.as_dict()
    assert registry.reloads == 3


def test_failed_reload_is_error_500_naming_the_problem() -> None:
    registry = one_socket()
    registry.failure = RuntimeError("database unreachable: connection refused")
    with pytest.raises(MIError) as info:
        _result(_table(registry, Clock()).call("sockets_reload", None))
    assert info.value.code == 500
    assert "database unreachable" in info.value.message


def test_list_passes_details() -> None:
    table = _table(one_socket(), Clock())
    assert _result(table.call("sockets_list", None)) == [
        {"socket": "udp:127.0.0.1:5070", "tag": "a"}
    ]
    assert _result(table.call("sockets_mgm:list", {"details": "yes"}))[0]["slot"] == 0


def test_bad_boolean_is_invalid_params() -> None:
    with pytest.raises(MIError) as info:
        _result(_table(one_socket(), Clock()).call("sockets_reload", {"report": "maybe"}))
    assert info.value.code == -32602


def test_parse_flag_words() -> None:
    assert parse_flag({"x": "TRUE"}, "x") is True
    assert parse_flag({"x": 0}, "x") is False
    assert parse_flag({}, "x", default=True) is True


def test_version_uptime_ps_which_shapes() -> None:
    clock = Clock()
    clock.advance(1042.9)
    table = _table(one_socket(), clock)
    assert _result(table.call("version", None)) == {"Server": "sipsock 1.2.3"}
    compiled = build_command_table(
        one_socket(),
        clock=clock,
        started_at=1000.0,
        process_list=list,
        version="1.2.3",
        sip_core="compiled (mypyc)",
    )
    assert _result(compiled.call("version", None)) == {
        "Server": "sipsock 1.2.3",
        "SIP core": "compiled (mypyc)",
    }
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
    table = _table(one_socket(), Clock())
    assert _result(table.call("help", {"mi_cmd": "sockets_list"}))["Exported by"] == "sipsock"
    with pytest.raises(MIError) as info:
        _result(table.call("help", ["nope"]))
    assert info.value.code == 404
