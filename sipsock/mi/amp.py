"""MI over AMP on a UNIX socket: what ``sipsock-mi`` talks to.

One command, `MICall`: a command name and its params as JSON in; the result
as JSON out, or an `MIRemoteError` whose text is the JSON error object
(``{"code": ..., "message": ..., "data": ...}``). JSON values are split over
several AMP keys, so results are not bound by AMP's 64 KiB value limit.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.application import internet
from twisted.application.service import IService
from twisted.internet.interfaces import IListeningPort, IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from sipsock.mi import jsonrpc
from sipsock.mi.commands import CommandTable, MIError

SOCKET_NAME = "sipsock-mi.sock"
DEFAULT_STATE_DIR = "var"
_CHUNK = 60000
#: Largest JSON value accepted from the other side.
MAX_JSON_BYTES = 64 * 1024 * 1024


class JsonValue(amp.Argument):
    """Any JSON value, split over ``name``, ``name.1``, ``name.2`` ... keys."""

    def __init__(self, optional: bool = False) -> None:
        super().__init__(optional)  # type: ignore[no-untyped-call]

    def toBox(
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        value = objects.pop(name.decode("ascii"))
        data = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
        strings[name] = data[:_CHUNK]
        for index, start in enumerate(range(_CHUNK, len(data), _CHUNK), start=1):
            strings[name + b"." + str(index).encode("ascii")] = data[start : start + _CHUNK]

    def fromBox(
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        parts = [strings.pop(name)]
        index = 1
        while (key := name + b"." + str(index).encode("ascii")) in strings:
            parts.append(strings.pop(key))
            if sum(map(len, parts)) > MAX_JSON_BYTES:
                raise ValueError(f"JSON value larger than {MAX_JSON_BYTES} bytes")
            index += 1
        objects[name.decode("ascii")] = json.loads(b"".join(parts).decode("utf-8"))


class MIRemoteError(Exception):
    """An MI error carried over AMP; its text is the JSON error object."""

    def __init__(self, description: str | bytes) -> None:
        if isinstance(description, bytes):
            description = description.decode("utf-8", "replace")
        super().__init__(description)
        self.description = description

    def __str__(self) -> str:
        return self.description

    @classmethod
    def from_mi_error(cls, error: MIError) -> MIRemoteError:
        """Wrap an `MIError` for the wire."""
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        return cls(json.dumps(body))

    def as_mi_error(self) -> MIError:
        """The `MIError` this carries (500 with the raw text if it is not JSON)."""
        try:
            body = json.loads(self.description)
            return MIError(int(body["code"]), str(body["message"]), data=body.get("data"))
        except (ValueError, KeyError, TypeError):
            return MIError(jsonrpc.COMMAND_FAILED, self.description)


class MICall(amp.Command):
    """Run one MI command: ``params`` is a JSON object, array or null."""

    commandName = b"MICall"
    arguments = [(b"command", amp.Unicode()), (b"params", JsonValue())]  # type: ignore[no-untyped-call]
    response = [(b"result", JsonValue())]
    errors = {MIRemoteError: b"MI_ERROR"}


class MIAMPProtocol(amp.AMP):
    """The server side: answers `MICall` from the command table."""

    log = Logger()

    def __init__(self, table: CommandTable) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._table = table

    @MICall.responder
    def call(self, command: str, params: Any) -> Any:
        if params is not None and not isinstance(params, dict | list):
            raise MIRemoteError.from_mi_error(
                MIError(
                    jsonrpc.INVALID_PARAMS,
                    jsonrpc.MESSAGES[jsonrpc.INVALID_PARAMS],
                    data="params must be an object or an array",
                )
            )

        def wrap(failure: Any) -> Any:
            failure.trap(MIError)
            raise MIRemoteError.from_mi_error(failure.value)

        return self._table.call(command, params).addCallbacks(
            lambda result: {"result": result}, wrap
        )


class MIAMPFactory(Factory):
    """Builds `MIAMPProtocol` s sharing one command table."""

    def __init__(self, table: CommandTable) -> None:
        self._table = table

    def buildProtocol(self, addr: Any) -> MIAMPProtocol:
        return MIAMPProtocol(self._table)


def socket_path(state_dir: str = DEFAULT_STATE_DIR) -> str:
    """Where the MI socket lives in a state directory."""
    return os.path.join(state_dir, SOCKET_NAME)


def _prepare_dir(path: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)


def listen_amp(
    table: CommandTable,
    path: str,
    *,
    mode: int = 0o600,
    reactor: IReactorUNIX | None = None,
) -> IListeningPort:
    """Serve AMP on the UNIX socket at ``path`` (mode 0600) now.

    The directory is created (0700) when missing; a socket left by a process
    that is gone is replaced (Twisted's PID lock file ``path.lock``).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor  # type: ignore[assignment]
    assert reactor is not None
    _prepare_dir(path)
    return reactor.listenUNIX(path, MIAMPFactory(table), mode=mode, wantPID=True)


def amp_service(
    table: CommandTable, *, state_dir: str = DEFAULT_STATE_DIR, mode: int = 0o600
) -> IService:
    """A service serving AMP on ``<state_dir>/sipsock-mi.sock`` while running."""
    path = socket_path(state_dir)
    _prepare_dir(path)
    service: IService = internet.UNIXServer(path, MIAMPFactory(table), mode=mode, wantPID=True)  # type: ignore[no-untyped-call]
    return service
