"""Log output as JSON lines (``[core] log_format = "json"``).

twistd picks its log observer from ``--logger`` (a factory) before it starts
logging; `use_json_logs` sets that factory on twistd's options when the
configuration asks for JSON, unless ``--logger`` was given. The observer writes
where twistd's text observer would: ``--logfile`` (a file rotated on SIGUSR1
and by size, as twistd does), standard output with ``-n`` and no log file, or
``-`` for standard output. ``--syslog`` keeps twistd's syslog output.

Each line is one JSON object: the event's fields as `twisted.logger.eventAsJSON`
writes them (``log_time``, ``log_level``, ``log_namespace``, ``log_format`` and
every structured field, such as ``socket`` and ``slot`` of a socket event),
plus ``log_text``, the formatted message.
"""

from __future__ import annotations

import signal
import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, eventAsJSON, formatEvent
from twisted.logger import LogEvent as TwistedLogEvent
from twisted.python import logfile


def format_json_line(event: TwistedLogEvent) -> str:
    """One event as one line of JSON, with its formatted text as ``log_text``."""
    record = dict(event)
    record.setdefault("log_text", formatEvent(event))
    return eventAsJSON(record) + "\n"


def json_file_observer(out: IO[Any]) -> ILogObserver:
    """An observer writing JSON lines to ``out``."""
    return FileLogObserver(out, format_json_line)


def json_observer_for(options: Any) -> ILogObserver:
    """The JSON observer for twistd's options (``logfile``, ``nodaemon``, ``syslog``)."""
    if options.get("syslog"):
        from twisted.python import syslog  # twistd's own choice: keep it

        legacy: Any = syslog.SyslogObserver(  # type: ignore[no-untyped-call]
            options.get("prefix", "twisted")
        ).emit
        from twisted.logger import LegacyLogObserverWrapper

        return LegacyLogObserverWrapper(legacy)
    name = options.get("logfile") or ""
    if name == "-" or (not name and options.get("nodaemon")):
        return json_file_observer(sys.stdout)
    log_file: Any = logfile.LogFile.fromFullPath(  # type: ignore[no-untyped-call]
        name or "twistd.log"
    )
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined,unused-ignore]

        signal.signal(signal.SIGUSR1, rotate)
    return json_file_observer(log_file)


#: twistd's options, kept by `use_json_logs` for `twistd_json_observer` (one per process).
_twistd: dict[str, Any] = {}


def twistd_json_observer() -> ILogObserver:
    """The ``--logger`` factory `use_json_logs` names: JSON lines where twistd would log."""
    return json_observer_for(_twistd.get("options", {}))


def use_json_logs(options: Any) -> bool:
    """Make twistd log JSON lines; False (nothing changed) if ``--logger`` was given.

    twistd resolves ``options["logger"]`` by dotted name after the plugin's
    options are parsed, so it names `twistd_json_observer`, which reads the
    options kept here.
    """
    if options is None or options.get("logger"):
        return False
    _twistd["options"] = options
    options["logger"] = f"{__name__}.twistd_json_observer"
    return True
