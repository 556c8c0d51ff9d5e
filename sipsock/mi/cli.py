"""``sipsock-mi``: run an MI command on a running sipsock over AMP.

    sipsock-mi [-c FILE | -s SOCKET] [--json] COMMAND [key=value ... | value ...]
    sipsock-mi ... COMMAND --params '{"key": "value"}'

The socket is ``-s``, else the ``[mi] socket`` of the configuration file
``-c`` (default ``etc/sipsock.toml`` when it exists), else
``var/sipsock-mi.sock``.

Prints the JSON result (indented, like ``opensips-mi``). ``sockets_reload``
(and ``sockets_mgm:reload``) asks for the report and prints a short summary
(one line of counts, then one line per rejected row and failed socket);
``--json`` prints the report as JSON instead, as does an explicit
``report=true``. (The JSON-RPC front ends answer ``"OK"`` unless asked for
the report, as OpenSIPS does.)

Exit status: 0 done; 1 the command failed (``ERROR: <code>: <message>`` on
stderr), or no answer in time; 2 nothing was asked: a bad command line, or
no daemon at the socket (the message names the socket); 3 the reload was
done but rejected rows or failed sockets (the report says which).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure

from sipsock.config import ConfigError, load_config
from sipsock.mi.amp import MICall, MIRemoteError, socket_path
from sipsock.mi.commands import MIError

DEFAULT_SOCKET = socket_path()
DEFAULT_CONFIG = "etc/sipsock.toml"
#: The commands whose answer is a reload report.
RELOAD_COMMANDS: Final = frozenset({"sockets_reload", "sockets_mgm:reload"})

#: Exit statuses.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_NOT_ASKED: Final = 2
EXIT_REJECTED: Final = 3


class UsageError(Exception):
    """Bad command line arguments."""


def build_parser() -> argparse.ArgumentParser:
    """The command line parser."""
    parser = argparse.ArgumentParser(
        prog="sipsock-mi",
        description="Run an MI command on a running sipsock daemon.",
        epilog="Examples: sipsock-mi sockets_list; sipsock-mi sockets_reload; "
        "sipsock-mi --json sockets_reload; sipsock-mi get_statistics --params "
        '\'{"statistics": ["all"]}\'. Exit status: 0 done, 1 the command failed, '
        "2 not asked (bad command line, no daemon at the socket), "
        "3 reloaded with rejected rows or failed sockets.",
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
    parser.add_argument(
        "-j",
        "--json",
        action="store_true",
        help="print the answer as JSON (sockets_reload: the whole report, not the summary)",
    )
    parser.add_argument("-p", "--params", metavar="PARAMS", help="params as a JSON object or array")
    parser.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the answer (default 120)",
    )
    parser.add_argument("command", help="the MI command, e.g. sockets_list")
    parser.add_argument(
        "params_words",
        nargs="*",
        metavar="params",
        help="named params as key=value, or positional values",
    )
    return parser


def compatible_argv(argv: Sequence[str]) -> list[str]:
    """``--json PARAMS`` (the old spelling, a JSON object or array) as ``--params PARAMS``."""
    result = list(argv)
    for index, word in enumerate(result[:-1]):
        if word in ("-j", "--json") and result[index + 1].lstrip().startswith(("{", "[")):
            result[index] = "--params"
    return result


def parse_params(words: list[str], json_text: str | None) -> dict[str, Any] | list[Any] | None:
    """The params to send: from --params, from key=value words, or positional words."""
    if json_text is not None:
        if words:
            raise UsageError("give params either as --params or as words, not both")
        try:
            params = json.loads(json_text)
        except ValueError as exc:
            raise UsageError(f"--params is not valid JSON: {exc}") from exc
        if not isinstance(params, dict | list):
            raise UsageError("--params must be a JSON object or array")
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


def with_report(command: str, params: dict[str, Any] | list[Any] | None) -> tuple[Any, bool]:
    """The params to send, and whether to summarize the answer: a reload asks for its
    report unless the params already say (then the answer is printed as it comes)."""
    if command not in RELOAD_COMMANDS:
        return params, False
    if params is None:
        return {"report": True}, True
    if isinstance(params, dict) and "report" not in params:
        return {**params, "report": True}, True
    return params, False


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


def is_report(answer: Any) -> bool:
    """True for a reload report (a JSON object with ``rejected`` and ``failed``)."""
    return isinstance(answer, dict) and "rejected" in answer and "failed" in answer


def report_problems(answer: Any) -> bool:
    """True when a reload report has rejected rows or failed sockets."""
    return is_report(answer) and bool(answer.get("rejected") or answer.get("failed"))


def summarize_report(report: dict[str, Any]) -> str:
    """A reload report for people: the counts, then each rejected row and failed socket."""
    counts = ", ".join(
        f"{len(report.get(key) or [])} {key}"
        for key in ("added", "updated", "removed", "kept", "rejected", "failed")
    )
    seconds = report.get("seconds")
    took = f" in {seconds:.3f} s" if isinstance(seconds, int | float) else ""
    lines = [f"sockets reloaded{took}: {counts}"]
    for rejection in report.get("rejected") or []:
        reason = str(rejection.get("reason", ""))
        row = rejection.get("id")
        prefix = f"row {row}: " if row is not None and not reason.startswith("row ") else ""
        lines.append(f"rejected: {prefix}{reason}")
    for failure in report.get("failed") or []:
        lines.append(f"failed: {failure.get('socket')}: {failure.get('reason')}")
    return "\n".join(lines)


def render_answer(result: Any, *, summarize: bool, as_json: bool) -> str:
    """What to print for an answer."""
    if summarize and not as_json and is_report(result):
        return summarize_report(result)
    return json.dumps(result, indent=4)


async def run(reactor: Any, args: argparse.Namespace, params: Any) -> int:
    """Connect, call, print; the exit status."""
    endpoint = UNIXClientEndpoint(reactor, args.socket, timeout=10)  # type: ignore[no-untyped-call]
    from twisted.protocols.amp import AMP

    try:
        protocol = await connectProtocol(endpoint, AMP())  # type: ignore[no-untyped-call]
    except (ConnectError, OSError) as exc:
        reason = getattr(exc, "osError", None) or exc
        text = getattr(reason, "strerror", None) or str(reason).rstrip(".")
        print(
            f"ERROR: cannot connect to the MI socket {args.socket}: {text}. "
            "Is sipsock running, and is this its socket (-s, or [mi] socket of -c FILE)?",
            file=sys.stderr,
        )
        return EXIT_NOT_ASKED
    sending, summarize = with_report(args.command, params)
    try:
        answer = await _call(reactor, protocol, args.command, sending, args.timeout)
    except MIRemoteError as exc:
        print(format_error(exc.as_mi_error()), file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError:
        print(
            f"ERROR: no answer from {args.socket} within {args.timeout:g} s "
            "(the command may still be running)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except Exception as exc:  # a lost connection, a protocol error
        print(f"ERROR: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        protocol.transport.loseConnection()
    result = answer["result"]
    print(render_answer(result, summarize=summarize, as_json=args.json))
    return EXIT_REJECTED if report_problems(result) else EXIT_OK


async def _call(
    reactor: Any, protocol: Any, command: str, params: Any, timeout: float
) -> dict[str, Any]:
    """`MICall`, raced against a timer (never ``addTimeout`` on an AMP call: a late
    answer would be an error)."""
    done: Deferred[dict[str, Any]] = Deferred()
    call: Deferred[dict[str, Any]] = protocol.callRemote(MICall, command=command, params=params)

    def answered(result: dict[str, Any]) -> None:
        if not done.called:
            done.callback(result)

    def failed(failure: Failure) -> None:
        if not done.called:
            done.errback(failure)

    def late() -> None:
        if not done.called:
            done.errback(TimeoutError())

    call.addCallbacks(answered, failed)
    timer = reactor.callLater(timeout, late)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


def main(argv: list[str] | None = None) -> None:
    """Console script entry point."""
    parser = build_parser()
    args = parser.parse_args(compatible_argv(sys.argv[1:] if argv is None else argv))
    try:
        params = parse_params(args.params_words, args.params)
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
