"""JSON-RPC 2.0 in OpenSIPS's dialect: the pure rules, no I/O.

What the OpenSIPS MI core does, and therefore what the stock ``opensips-mi`` and
``opensips-cli`` clients expect:

* A request is a JSON object with ``"jsonrpc": "2.0"``, a string ``method``,
  optional ``params`` (an object or an array; an empty one means "no
  params") and an optional ``id`` (a string, an integer or null: the
  clients send strings; a fractional or out-of-range number, which may not
  survive the trip back, is an invalid request).
* ``NaN`` / ``Infinity`` literals and integers longer than Python reads
  are parse errors; a number out of the double range (``1e999``) anywhere
  in a request makes it an invalid request.
* A request without an ``id`` key is a notification: it gets no reply, except
  when it is not a valid request at all (parse error, invalid request).
* A parse error or an invalid request is answered with ``"id": null``.
* Errors are ``{"code": ..., "message": ..., "data": ...}`` with ``data`` only
  when there is a detail to give. Batches are not supported (an array is an
  invalid request).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
COMMAND_FAILED: Final = 500

MESSAGES: Final[dict[int, str]] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

#: Default bound on one request, for every front end.
MAX_REQUEST_BYTES: Final = 65536

JsonId = str | int | None
Params = dict[str, Any] | list[Any] | None


@dataclass(frozen=True)
class Request:
    """A valid JSON-RPC request.

    ``params`` is None when absent or empty. ``notification`` is true when the
    request had no ``id`` key (then ``id`` is None and no reply is sent).
    """

    method: str
    params: Params
    id: JsonId
    notification: bool


@dataclass(frozen=True)
class ErrorReply:
    """A request that could not be accepted, and the error to answer with.

    ``id`` is the request's id when it could be read, else None. The reply is
    always sent, even for a would-be notification (OpenSIPS does the same for
    parse errors and invalid requests).
    """

    code: int
    message: str
    data: str | None = None
    id: JsonId = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(body: bytes | str) -> tuple[Any, str | None]:
    """The JSON document, and the first number in it out of the double range (or None)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    out_of_range: list[str] = []

    def parse_float(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            out_of_range.append(number)
        return value

    document = json.loads(text, parse_constant=_reject_constant, parse_float=parse_float)
    return document, out_of_range[0] if out_of_range else None


def decode_request(body: bytes | str) -> Request | ErrorReply:
    """Turn one request body into a `Request`, or the `ErrorReply` to send."""
    try:
        document, out_of_range = _decode_json(body)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are both ValueErrors.
        return ErrorReply(PARSE_ERROR, MESSAGES[PARSE_ERROR], _parse_detail(exc))
    if not isinstance(document, dict):
        return ErrorReply(
            INVALID_REQUEST, MESSAGES[INVALID_REQUEST], "a request must be a JSON object"
        )
    has_id = "id" in document
    raw_id = document.get("id")
    request_id: JsonId = None
    problem: str | None = None
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int | None):
        problem = "'id' must be a string, an integer or null"
    else:
        request_id = raw_id
    if out_of_range is not None:
        problem = problem or f"number {out_of_range[:40]} is out of range"
    if document.get("jsonrpc") != "2.0":
        problem = problem or "'jsonrpc' must be \"2.0\""
    method = document.get("method")
    if not isinstance(method, str):
        problem = problem or "'method' must be a string"
    params = document.get("params")
    if params is not None and not isinstance(params, dict | list):
        problem = problem or "'params' must be an object or an array"
    if problem is not None or not isinstance(method, str):
        return ErrorReply(INVALID_REQUEST, MESSAGES[INVALID_REQUEST], problem, request_id)
    return Request(
        method=method,
        params=params if params else None,
        id=request_id,
        notification=not has_id,
    )


def _parse_detail(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "request is not UTF-8"
    if isinstance(exc, RecursionError):
        return "request nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_result(request_id: JsonId, result: Any) -> bytes:
    """The reply body for a successful call (compact, one line).

    A result that cannot be written as JSON gives an internal error reply.
    """
    try:
        return _dump({"jsonrpc": "2.0", "result": result, "id": request_id})
    except (TypeError, ValueError) as exc:
        return encode_error(request_id, INTERNAL_ERROR, MESSAGES[INTERNAL_ERROR], str(exc))


def encode_error(request_id: JsonId, code: int, message: str, data: str | None = None) -> bytes:
    """The reply body for an error (compact, one line; never raises).

    An id that cannot be written back is answered as null.
    """
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    try:
        return _dump({"jsonrpc": "2.0", "error": error, "id": request_id})
    except (TypeError, ValueError):
        return _dump({"jsonrpc": "2.0", "error": error, "id": None})


def encode_error_reply(reply: ErrorReply) -> bytes:
    """The reply body for an `ErrorReply` from `decode_request`."""
    return encode_error(reply.id, reply.code, reply.message, reply.data)


def wants_reply(request: Request) -> bool:
    """Whether a decoded request is answered (notifications are not)."""
    return not request.notification
