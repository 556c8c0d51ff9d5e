"""Log output of the daemon: the level (``[core] log_level``) and the format
(``[core] log_format``, text or JSON lines).

twistd picks its log observer from ``--logger`` (a factory, by dotted name)
before it starts logging; `use_sipsock_logs` sets that factory on twistd's
options to `twistd_observer`, which builds the observer the configuration
asks for and drops the events below ``log_level``. An explicit ``--logger``
still chooses the output; the level applies to it too. The observer writes
where twistd's own would: ``--logfile`` (a file rotated on SIGUSR1 and by
size, as twistd does), standard output with ``-n`` and no log file, or ``-``
for standard output; ``--syslog`` keeps twistd's syslog output.

Text lines are twistd's (``TIME [namespace#level] message``); JSON lines
are `sipsock.logevents.json_line`'s flat objects. Twisted's chatter about
its own objects counts as debug (`sipsock.logevents.effective_level`).

UDP workers log through `worker_observer`: flat JSON lines on their
standard error, which the control process re-logs under the worker's name
with the worker's fields (`parse_worker_line`).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python import logfile
from twisted.python.reflect import namedAny
from zope.interface import implementer

from sipsock.logevents import LEVELS, effective_level, flat_record, json_line, parse_level, passes


@implementer(ILogObserver)
class LevelFilter:
    """Passes on the events at ``level`` or above (`effective_level`) to ``observer``."""

    def __init__(self, observer: ILogObserver, level: LogLevel) -> None:
        self.observer = observer
        self.level = level

    def __call__(self, event: LogEvent) -> None:
        if passes(effective_level(event), self.level):
            self.observer(event)


class SecondTimes:
    """Twisted's `formatTime` of a log event's time, worked out once per second.

    Its text has a resolution of one second, and working it out (a time zone
    and a datetime built, then ``strftime``) was about half the cost of a text
    line. The text of the last second is kept (one entry); a time that
    ``datetime`` may round up to the next second, or before the epoch, is
    formatted as Twisted does, every time.
    """

    def __init__(self, formatter: Callable[[float | None], str] = formatTime) -> None:
        self._formatter = formatter
        self._last: tuple[int, str] = (-1, "")

    def __call__(self, when: float | None) -> str:
        if when is None or not 0 <= when < 2**53:
            return self._formatter(when)
        second = int(when)
        if when - second >= 0.9999995:  # datetime rounds to the microsecond: maybe up
            return self._formatter(when)
        last = self._last
        if last[0] == second:
            return last[1]
        text = self._formatter(when)
        self._last = (second, text)
        return text


_second_times = SecondTimes()


def text_line(event: LogEvent) -> str | None:
    """twistd's classic text line; a ``traceback`` field (from a worker) follows it."""
    text = formatEventAsClassicLogText(event, formatTime=_second_times)
    traceback = event.get("traceback")
    if text and isinstance(traceback, str) and "log_failure" not in event:
        text += "\t" + traceback.rstrip("\n").replace("\n", "\n\t") + "\n"
    return text


def file_observer(out: IO[Any], log_format: str = "text") -> ILogObserver:
    """An observer writing text or JSON lines to ``out``."""
    return FileLogObserver(out, json_line if log_format == "json" else text_line)


def json_file_observer(out: IO[Any]) -> ILogObserver:
    """An observer writing flat JSON lines to ``out``."""
    return file_observer(out, "json")


def observer_for(options: Any, log_format: str = "text") -> ILogObserver:
    """The observer for twistd's options (``logfile``, ``nodaemon``, ``syslog``)."""
    if options.get("syslog"):
        from twisted.python import syslog  # twistd's own choice: keep it

        legacy: Any = syslog.SyslogObserver(  # type: ignore[no-untyped-call]
            options.get("prefix", "twisted")
        ).emit
        return LegacyLogObserverWrapper(legacy)
    name = options.get("logfile") or ""
    if name == "-" or (not name and options.get("nodaemon")):
        return file_observer(sys.stdout, log_format)
    log_file: Any = logfile.LogFile.fromFullPath(  # type: ignore[no-untyped-call]
        name or "twistd.log"
    )
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined,unused-ignore]

        signal.signal(signal.SIGUSR1, rotate)
    return file_observer(log_file, log_format)


#: What `use_sipsock_logs` kept for `twistd_observer` (one daemon per process).
_twistd: dict[str, Any] = {}


def twistd_observer() -> ILogObserver:
    """The ``--logger`` factory `use_sipsock_logs` names: the configured output and level."""
    options = _twistd.get("options", {})
    given = _twistd.get("given")
    if given:
        factory: Callable[[], Any] = (
            namedAny(given)  # type: ignore[no-untyped-call]
            if isinstance(given, str)
            else given
        )
        made = factory()
        base = made if ILogObserver.providedBy(made) else LegacyLogObserverWrapper(made)
    else:
        base = observer_for(options, _twistd.get("format", "text"))
    return LevelFilter(base, _twistd.get("level", LogLevel.info))


def use_sipsock_logs(options: Any, *, log_format: str = "text", log_level: str = "info") -> None:
    """Make twistd log in ``log_format`` at ``log_level`` and above.

    twistd resolves ``options["logger"]`` by dotted name after the plugin's
    options are parsed, so it names `twistd_observer`, which reads what is
    kept here. A ``--logger`` given on the command line is kept as the output.
    """
    if options is None:
        return
    given = options.get("logger")
    _twistd.update(
        options=options,
        format=log_format,
        level=parse_level(log_level),
        given=None if given == f"{__name__}.twistd_observer" else given,
    )
    options["logger"] = f"{__name__}.twistd_observer"


# --- UDP workers ------------------------------------------------------------------------


def worker_observer(out: IO[str], level: LogLevel) -> ILogObserver:
    """A worker's observer: flat JSON lines on ``out`` (its stderr), ``level`` and above."""
    return LevelFilter(FileLogObserver(out, json_line), level)


def parse_worker_line(line: str) -> tuple[LogLevel, str, dict[str, Any]]:
    """A line a worker wrote: (level, message, fields), fields with ``logger`` and
    ``traceback`` when it had them.

    A line that is not one of `worker_observer`'s (the interpreter's own
    output, an old ``LEVEL text`` line) is the message, at info, or at the
    level its first word names.
    """
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("message"), str):
            try:
                level = parse_level(str(record.pop("level", "info")))
            except ValueError:
                level = LogLevel.info
            message = record.pop("message")
            record.pop("time", None)
            return level, message, record
    name, _, rest = text.partition(" ")
    if name in LEVELS:
        return LEVELS[name], rest, {}
    return LogLevel.info, text, {}


__all__ = [
    "LevelFilter",
    "file_observer",
    "flat_record",
    "json_file_observer",
    "observer_for",
    "parse_worker_line",
    "twistd_observer",
    "use_sipsock_logs",
    "worker_observer",
]
