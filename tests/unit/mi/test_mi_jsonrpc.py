"""The JSON-RPC rules of OpenSIPS's dialect (sipsock.mi.jsonrpc)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sipsock.mi import jsonrpc
from sipsock.mi.jsonrpc import ErrorReply, Request, decode_request


def test_request_with_named_params_is_decoded() -> None:
    body = b'{"jsonrpc":"2.0","id":"17","method":"sockets_list","params":{"details":true}}'
    assert decode_request(body) == Request("sockets_list", {"details": True}, "17", False)


def test_empty_params_mean_no_params() -> None:
    for params in ("{}", "[]"):
        body = f'{{"jsonrpc":"2.0","id":1,"method":"which","params":{params}}}'
        decoded = decode_request(body)
        assert isinstance(decoded, Request)
        assert decoded.params is None


def test_request_without_id_is_a_notification() -> None:
    decoded = decode_request('{"jsonrpc":"2.0","method":"sockets_reload"}')
    assert isinstance(decoded, Request)
    assert decoded.notification
    assert not jsonrpc.wants_reply(decoded)


def test_null_id_is_not_a_notification() -> None:
    decoded = decode_request('{"jsonrpc":"2.0","method":"which","id":null}')
    assert isinstance(decoded, Request)
    assert not decoded.notification


def test_bad_json_is_a_parse_error_with_null_id() -> None:
    decoded = decode_request(b'{"jsonrpc":"2.0","id":"1","method":')
    assert isinstance(decoded, ErrorReply)
    assert (decoded.code, decoded.message, decoded.id) == (-32700, "Parse error", None)


def test_non_utf8_and_nan_are_parse_errors() -> None:
    for body in (b"\xff\xfe{}", b'{"jsonrpc":"2.0","id":NaN,"method":"x"}'):
        decoded = decode_request(body)
        assert isinstance(decoded, ErrorReply)
        assert decoded.code == jsonrpc.PARSE_ERROR


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    decoded = decode_request(b"[" * 100000 + b"]" * 100000)
    assert isinstance(decoded, ErrorReply)
    assert decoded.code == jsonrpc.PARSE_ERROR


def test_invalid_requests_keep_their_id() -> None:
    cases = [
        '{"id":"5","method":"which"}',
        '{"jsonrpc":"1.0","id":"5","method":"which"}',
        '{"jsonrpc":"2.0","id":"5","method":7}',
        '{"jsonrpc":"2.0","id":"5","method":"which","params":"x"}',
    ]
    for body in cases:
        decoded = decode_request(body)
        assert isinstance(decoded, ErrorReply), body
        assert (decoded.code, decoded.message, decoded.id) == (-32600, "Invalid Request", "5")


def test_batch_and_scalars_are_invalid_requests() -> None:
    for body in ("[]", '[{"jsonrpc":"2.0","method":"which","id":1}]', "42", '"x"', "null"):
        decoded = decode_request(body)
        assert isinstance(decoded, ErrorReply)
        assert decoded.code == jsonrpc.INVALID_REQUEST
        assert decoded.id is None


def test_object_id_is_invalid() -> None:
    decoded = decode_request('{"jsonrpc":"2.0","method":"which","id":{"a":1}}')
    assert isinstance(decoded, ErrorReply)
    assert decoded.code == jsonrpc.INVALID_REQUEST


def test_encode_result_is_one_compact_line() -> None:
    body = jsonrpc.encode_result("3", [{"socket": "udp:127.0.0.1:5070"}])
    assert b"\n" not in body
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "result": [{"socket": "udp:127.0.0.1:5070"}],
        "id": "3",
    }


def test_encode_error_adds_data_only_when_given() -> None:
    assert json.loads(jsonrpc.encode_error(1, -32601, "Method not found")) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 1,
    }
    error = json.loads(jsonrpc.encode_error(None, 500, "reload failed", "db down"))["error"]
    assert error == {"code": 500, "message": "reload failed", "data": "db down"}


def test_unserializable_result_becomes_internal_error() -> None:
    reply = json.loads(jsonrpc.encode_result("1", {"x": object()}))
    assert reply["error"]["code"] == jsonrpc.INTERNAL_ERROR


@given(st.binary(max_size=512))
def test_any_bytes_decode_to_request_or_error(body: bytes) -> None:
    assert isinstance(decode_request(body), Request | ErrorReply)


@given(st.text(max_size=30), st.one_of(st.none(), st.text(max_size=10), st.integers()))
def test_well_formed_requests_round_trip(method: str, request_id: str | int | None) -> None:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "id": request_id})
    assert decode_request(body) == Request(method, None, request_id, False)


def test_id_that_is_not_a_string_integer_or_null_is_an_invalid_request() -> None:
    for raw in ("1e999", "-1e999", "1.5", "true", "{}", "[1]"):
        decoded = decode_request(f'{{"jsonrpc":"2.0","id":{raw},"method":"which"}}')
        assert isinstance(decoded, ErrorReply), raw
        assert (decoded.code, decoded.id) == (jsonrpc.INVALID_REQUEST, None), raw
        assert jsonrpc.encode_error_reply(decoded).endswith(b'"id":null}')


def test_number_out_of_range_in_params_is_an_invalid_request() -> None:
    decoded = decode_request('{"jsonrpc":"2.0","id":"4","method":"which","params":[-1e400]}')
    assert isinstance(decoded, ErrorReply)
    assert (decoded.code, decoded.id, decoded.data) == (
        jsonrpc.INVALID_REQUEST,
        "4",
        "number -1e400 is out of range",
    )


def test_error_reply_with_an_unwritable_id_answers_null() -> None:
    body = jsonrpc.encode_error(float("inf"), jsonrpc.INTERNAL_ERROR, "Internal error")  # type: ignore[arg-type]
    assert json.loads(body)["id"] is None
