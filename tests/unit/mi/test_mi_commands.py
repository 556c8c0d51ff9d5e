"""The MI command table: params recipes, errors, the JSON-RPC glue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from sipsock.mi.commands import (
    CommandTable,
    MICommand,
    MIError,
    answer_jsonrpc,
    resolve_params,
)


def _result(d: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "Deferred did not fire"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def _error(d: Deferred[Any]) -> MIError:
    with pytest.raises(MIError) as info:
        _result(d)
    return info.value


def _echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


ECHO = MICommand("echo", _echo, ((), ("a",), ("a", "b")))


def test_named_params_must_match_one_recipe() -> None:
    assert resolve_params(ECHO, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert resolve_params(ECHO, None) == {}
    with pytest.raises(MIError) as info:
        resolve_params(ECHO, {"a": 1, "c": 2})
    assert info.value.code == -32602
    assert info.value.message == "Invalid params"


def test_positional_params_are_matched_by_count() -> None:
    assert resolve_params(ECHO, ["x"]) == {"a": "x"}
    assert resolve_params(ECHO, ["x", "y"]) == {"a": "x", "b": "y"}
    with pytest.raises(MIError) as info:
        resolve_params(ECHO, ["x", "y", "z"])
    assert info.value.code == -32602


def test_two_recipes_of_one_length_are_ambiguous_for_positional_params() -> None:
    command = MICommand("two", _echo, (("a",), ("b",)))
    with pytest.raises(MIError) as info:
        resolve_params(command, ["x"])
    assert info.value.data == "Ambiguous call"


def test_command_needing_params_refuses_none() -> None:
    command = MICommand("needs", _echo, (("a",),))
    with pytest.raises(MIError) as info:
        resolve_params(command, None)
    assert info.value.code == -32602


def test_unknown_command_is_method_not_found() -> None:
    error = _error(CommandTable([ECHO]).call("nope", None))
    assert (error.code, error.message) == (-32601, "Method not found")


def test_handler_value_and_deferred_are_both_results() -> None:
    table = CommandTable([ECHO, MICommand("later", lambda params: defer.succeed("done"))])
    assert _result(table.call("echo", {"a": 1})) == {"a": 1}
    assert _result(table.call("later", [])) == "done"


def test_handler_failure_becomes_500_with_reason() -> None:
    def broken(params: dict[str, Any]) -> Any:
        raise RuntimeError("database is down")

    def broken_later(params: dict[str, Any]) -> Deferred[Any]:
        return defer.fail(OSError("table sockets missing"))

    table = CommandTable([MICommand("a", broken), MICommand("b", broken_later)])
    assert (_error(table.call("a", None)).code, str(_error(table.call("a", None)))) == (
        500,
        "500: database is down",
    )
    assert _error(table.call("b", None)).message == "table sockets missing"


def test_handler_mi_error_passes_through() -> None:
    def refuse(params: dict[str, Any]) -> Any:
        raise MIError(404, "unknown MI command")

    error = _error(CommandTable([MICommand("r", refuse)]).call("r", None))
    assert (error.code, error.message) == (404, "unknown MI command")


def test_names_in_registration_order_and_no_duplicates() -> None:
    table = CommandTable([ECHO, MICommand("b", _echo)])
    assert table.names() == ["echo", "b"]
    with pytest.raises(ValueError, match="already registered"):
        table.register(MICommand("b", _echo))


def test_answer_jsonrpc_replies_result_and_errors() -> None:
    table = CommandTable([ECHO])
    ok = json.loads(
        _result(answer_jsonrpc(table, b'{"jsonrpc":"2.0","id":"9","method":"echo","params":["v"]}'))
    )
    assert ok == {"jsonrpc": "2.0", "result": {"a": "v"}, "id": "9"}
    missing = json.loads(
        _result(answer_jsonrpc(table, b'{"jsonrpc":"2.0","id":"9","method":"gone"}'))
    )
    assert missing["error"]["code"] == -32601
    assert missing["id"] == "9"
    parse = json.loads(_result(answer_jsonrpc(table, b"{nope")))
    assert (parse["error"]["code"], parse["id"]) == (-32700, None)


def test_notification_gets_no_reply_even_on_error() -> None:
    table = CommandTable([ECHO])
    assert _result(answer_jsonrpc(table, b'{"jsonrpc":"2.0","method":"echo"}')) is None
    assert _result(answer_jsonrpc(table, b'{"jsonrpc":"2.0","method":"gone"}')) is None
