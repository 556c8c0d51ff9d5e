"""The MI command table: names, parameter recipes, handlers.

Every front end (AMP, HTTP, datagram, FIFO) calls the same `CommandTable`.
Parameters follow OpenSIPS's rule: a command has one or more *recipes* (lists
of parameter names); named parameters must match one recipe's names exactly,
positional parameters are matched by count. The handler always receives a
dict of named parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.mi import jsonrpc

log = Logger()

Handler = Callable[[dict[str, Any]], Any]
"""A command handler: named params in, a JSON value (or a Deferred of one) out."""


class MIError(Exception):
    """An MI call that failed, with the JSON-RPC error code to answer with.

    ``code`` is a JSON-RPC code (-32601 unknown command, -32602 bad params)
    or 500 for a command that failed; ``message`` says why; ``data`` is an
    optional detail (OpenSIPS puts it in the error's ``data`` member).
    """

    def __init__(self, code: int, message: str, *, data: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        detail = f" ({self.data})" if self.data else ""
        return f"{self.code}: {self.message}{detail}"

    def __repr__(self) -> str:
        return f"MIError({self.code!r}, {self.message!r}, data={self.data!r})"


def invalid_params(detail: str) -> MIError:
    """The -32602 error OpenSIPS answers for bad parameters, with a detail."""
    return MIError(jsonrpc.INVALID_PARAMS, jsonrpc.MESSAGES[jsonrpc.INVALID_PARAMS], data=detail)


@dataclass(frozen=True)
class MICommand:
    """One MI command.

    ``params`` lists the accepted recipes: each is a tuple of parameter names;
    ``()`` means the command may be called without parameters.
    """

    name: str
    handler: Handler
    params: tuple[tuple[str, ...], ...] = ((),)
    help: str = ""


def resolve_params(command: MICommand, params: dict[str, Any] | list[Any] | None) -> dict[str, Any]:
    """Match the call's params against the command's recipes (pure).

    Returns the named parameters; raises `MIError` (-32602) when no recipe fits.
    """
    if not params:
        if () in command.params:
            return {}
        return _no_match(command, "missing parameters")
    if isinstance(params, list):
        fitting = [recipe for recipe in command.params if recipe and len(recipe) == len(params)]
        if len(fitting) > 1:
            raise invalid_params("Ambiguous call")
        if not fitting:
            return _no_match(command, f"{len(params)} positional parameter(s) given")
        return dict(zip(fitting[0], params, strict=True))
    if isinstance(params, dict):
        names = set(params)
        for recipe in command.params:
            if recipe and set(recipe) == names:
                return dict(params)
        return _no_match(command, f"parameters {', '.join(sorted(names))} given")
    raise invalid_params("params must be an object or an array")


def _describe_recipe(recipe: tuple[str, ...]) -> str:
    return "(" + ", ".join(recipe) + ")" if recipe else "(none)"


def _no_match(command: MICommand, given: str) -> dict[str, Any]:
    accepted = " or ".join(_describe_recipe(recipe) for recipe in command.params)
    raise invalid_params(f"{given}; {command.name} accepts {accepted}")


class CommandTable:
    """The MI commands by name, in registration order."""

    log = Logger()

    #: What requests for a command that does not exist are counted under.
    UNKNOWN = "unknown"

    def __init__(self, commands: Iterable[MICommand] = ()) -> None:
        self._commands: dict[str, MICommand] = {}
        #: Requests and failed requests by command (`UNKNOWN` for the others), from
        #: every front end; keys are registered names, so their number is bounded.
        self.requests: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        for command in commands:
            self.register(command)

    def register(self, command: MICommand) -> None:
        """Add a command; a name can be registered once."""
        if command.name in self._commands:
            raise ValueError(f"MI command {command.name!r} is already registered")
        if not command.params:
            raise ValueError(f"MI command {command.name!r} has no parameter recipe")
        self._commands[command.name] = command

    def names(self) -> list[str]:
        """The command names, in registration order."""
        return list(self._commands)

    def get(self, name: str) -> MICommand | None:
        """The command called ``name``, or None."""
        return self._commands.get(name)

    def call(self, name: str, params: dict[str, Any] | list[Any] | None) -> Deferred[Any]:
        """Run a command. Fails with `MIError` only.

        Unknown command: -32601; params that fit no recipe: -32602; any other
        failure of the handler: 500 with the failure's text as the message.
        """
        command = self._commands.get(name)
        counted = name if command is not None else self.UNKNOWN
        self.requests[counted] = self.requests.get(counted, 0) + 1
        if command is None:
            self.failures[counted] = self.failures.get(counted, 0) + 1
            return defer.fail(
                MIError(
                    jsonrpc.METHOD_NOT_FOUND,
                    jsonrpc.MESSAGES[jsonrpc.METHOD_NOT_FOUND],
                    data=f"unknown command {name[:100]!r}",
                )
            )
        try:
            named = resolve_params(command, params)
        except MIError as exc:
            self.failures[name] = self.failures.get(name, 0) + 1
            return defer.fail(exc)
        result: Deferred[Any] = defer.maybeDeferred(command.handler, named)
        result.addErrback(self._as_mi_error, name)
        return result

    def _as_mi_error(self, failure: Failure, name: str) -> Failure:
        self.failures[name] = self.failures.get(name, 0) + 1
        error = failure.value
        if isinstance(error, MIError):
            return failure
        reason = str(error) or error.__class__.__name__
        self.log.warn("MI command {command} failed: {reason}", command=name, reason=reason)
        raise MIError(jsonrpc.COMMAND_FAILED, reason) from error


def answer_jsonrpc(table: CommandTable, body: bytes) -> Deferred[bytes | None]:
    """Answer one JSON-RPC request body: the reply body, or None for no reply.

    Never fails: every problem becomes a JSON-RPC error reply.
    """
    decoded = jsonrpc.decode_request(body)
    if isinstance(decoded, jsonrpc.ErrorReply):
        return defer.succeed(jsonrpc.encode_error_reply(decoded))
    request = decoded

    def on_result(result: Any) -> bytes | None:
        if not jsonrpc.wants_reply(request):
            return None
        return jsonrpc.encode_result(request.id, result)

    def on_error(failure: Failure) -> bytes | None:
        if not jsonrpc.wants_reply(request):
            return None
        error = failure.value
        if isinstance(error, MIError):
            return jsonrpc.encode_error(request.id, error.code, error.message, error.data)
        return jsonrpc.encode_error(
            request.id,
            jsonrpc.INTERNAL_ERROR,
            jsonrpc.MESSAGES[jsonrpc.INTERNAL_ERROR],
            str(failure.value),
        )

    def on_crash(failure: Failure) -> bytes:
        # A reply that could not be built: answer anyway, never go silent.
        log.failure("MI request {method} could not be answered", failure, method=request.method)
        return internal_error(str(failure.value))

    answer: Deferred[bytes | None] = table.call(request.method, request.params).addCallbacks(
        on_result, on_error
    )
    return answer.addErrback(on_crash)


def internal_error(detail: str) -> bytes:
    """The JSON-RPC internal error a front end answers when a request crashed."""
    return jsonrpc.encode_error(
        None, jsonrpc.INTERNAL_ERROR, jsonrpc.MESSAGES[jsonrpc.INTERNAL_ERROR], detail
    )
