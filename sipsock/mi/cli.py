"""``sipsock-mi``: run an MI command on a running sipsock over AMP.

    sipsock-mi [-c FILE | -s SOCKET] COMMAND [key=value ... | value ...] [--json PARAMS]

The socket is ``-s``, else the ``[mi] socket`` of the configuration file
``-c`` (default ``etc/sipsock.toml`` when it exists), else
``var/sipsock-mi.sock``.

Prints the JSON result (indented, like ``opensips-mi``); on failure prints
``ERROR: <code>: <message> (<detail>)`` on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError

from sipsock.config import ConfigError, load_config
from sipsock.mi.amp import MICall, MIRemoteError, socket_path
from sipsock.mi.commands import MIError

DEFAULT_SOCKET = socket_path()
DEFAULT_CONFIG = "etc/sipsock.toml"


class UsageError(Exception):
    """Bad command line arguments."""


def build_parser() -> argparse.ArgumentParser:
    """The command line parser."""
    parser = argparse.ArgumentParser(
        prog="sipsock-mi",
        description="Run an MI command on a running sipsock daemon.",
        epilog="Examples: sipsock-mi sockets_list; sipsock-mi sockets_reload report=true; "
        "sipsock-mi sockets_reload --json '{\"report\": true}'",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"the daemon's configuration file (default {DEFAULT_CONFIG} when it exists)",
    )
    parser.add_argument(
        "-s",
        "--socket",
        help=f"the daemon's MI socket (default: from the config, else {DEFAULT_SOCKET})",
    )
    parser.add_argument("-j", "--json", metavar="PARAMS", help="params as a JSON object or array")
    parser.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the answer (default 120)",
    )
    parser.add_argument("command", help="the MI command, e.g. sockets_list")
    parser.add_argument("params", nargs="*", help="named params as key=value, or positional values")
    return parser


def parse_params(words: list[str], json_text: str | None) -> dict[str, Any] | list[Any] | None:
    """The params to send: from --json, from key=value words, or positional words."""
    if json_text is not None:
        if words:
            raise UsageError("give params either as --json or as words, not both")
        try:
            params = json.loads(json_text)
        except ValueError as exc:
            raise UsageError(f"--json is not valid JSON: {exc}") from exc
        if not isinstance(params, dict | list):
            raise UsageError("--json must be a JSON object or array")
        return params
    if not words:
        return None
    named = [word for word in words if "=" in word]
    if not named:
        return list(words)
    if len(named) != len(words):
        raise UsageError("mix of key=value and positional params")
    result: dict[str, Any] = {}
    for word in words:
        key, value = word.split("=", 1)
        if not key:
            raise UsageError(f"empty parameter name in {word!r}")
        if key in result:
            raise UsageError(f"parameter {key!r} given twice")
        result[key] = value
    return result


def choose_socket(args: argparse.Namespace) -> str:
    """The MI socket to connect to, from -s, -c or the defaults."""
    if args.socket:
        return str(args.socket)
    config = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if config is None:
        return DEFAULT_SOCKET
    try:
        return str(load_config(config).mi_socket)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def format_error(error: MIError) -> str:
    """The error text printed on failure."""
    return f"ERROR: {error}"


async def run(reactor: Any, args: argparse.Namespace, params: Any) -> int:
    """Connect, call, print; the exit status."""
    endpoint = UNIXClientEndpoint(reactor, args.socket, timeout=10)  # type: ignore[no-untyped-call]
    from twisted.protocols.amp import AMP

    try:
        protocol = await connectProtocol(endpoint, AMP())  # type: ignore[no-untyped-call]
    except (ConnectError, OSError) as exc:
        print(
            f"ERROR: cannot connect to {args.socket}: {str(exc).rstrip('.')}. Is sipsock running?",
            file=sys.stderr,
        )
        return 1
    try:
        call: Deferred[dict[str, Any]] = protocol.callRemote(
            MICall, command=args.command, params=params
        )
        call.addTimeout(args.timeout, reactor)
        answer = await call
    except MIRemoteError as exc:
        print(format_error(exc.as_mi_error()), file=sys.stderr)
        return 1
    except Exception as exc:  # a lost connection, a timeout, a protocol error
        print(f"ERROR: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        protocol.transport.loseConnection()
    print(json.dumps(answer["result"], indent=4))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = parse_params(args.params, args.json)
        args.socket = choose_socket(args)
    except UsageError as exc:
        parser.error(str(exc))

    def start(reactor: Any) -> Deferred[int]:
        return Deferred.fromCoroutine(run(reactor, args, params))

    def react_main(reactor: Any) -> Deferred[None]:
        return start(reactor).addCallback(_exit_with)

    task.react(react_main)


def _exit_with(status: int) -> None:
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
