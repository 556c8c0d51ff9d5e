"""Log events as operators read them: levels, quiet rules, flat JSON records.

Pure functions of a `twisted.logger` event (a dict); `sipsock.logs` wires
them to twistd's observers.

* `parse_level`: a ``[core] log_level`` name as a `LogLevel`.
* `effective_level`: the level an event is filtered at. Twisted's chatter
  (``Starting factory <... object at 0x...>``, AMP ``connection
  established`` / ``lost``, ``Site starting on 8888``, ``(TCP Port N
  Closed)``) counts as debug, whatever level Twisted gave it.
* `flat_record` / `json_line`: one event as one flat JSON object that log
  shippers take as it is: ``time`` (ISO-8601, UTC), ``level``, ``logger``,
  ``message``, then the event's own fields (``socket``, ``slot``, ``peer``,
  ...), and ``traceback`` for a failure. A field that JSON cannot hold is
  written as its ``str`` (bytes as their ``repr``).
* `logger_of`: the logger a ``log = Logger()`` class attribute gives an
  instance, for the classes mypyc compiles (which hold no such attribute).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from twisted.logger import Logger, LogLevel, formatEvent

#: The keys every JSON line has, in this order (an event field of the same
#: name is written as ``field_<name>``).
RECORD_KEYS: Final = ("time", "level", "logger", "message")
#: Keys of legacy (``twisted.python.log``) events that are not fields of their own.
_LEGACY_KEYS: Final = frozenset(
    {"message", "isError", "system", "time", "format", "printed", "why", "failure", "logLevel"}
)
#: ``log_format`` strings of Twisted's per-object chatter.
_CHATTER_FORMATS: Final = frozenset(
    {
        "Starting factory {factory!r}",
        "Stopping factory {factory!r}",
        "Starting protocol {protocol!r}",
        "Stopping protocol {protocol!r}",
    }
)
_AMP_CHATTER: Final = re.compile(r"\{cls\} connection (established|lost) ")
_LEGACY_CHATTER: Final = re.compile(r"\S+ starting on \S+$|\((TCP|UDP|UNIX) Port \S+ Closed\)$")


#: Twisted's levels by name, least severe first.
LEVELS: Final[dict[str, LogLevel]] = {level.name: level for level in LogLevel.iterconstants()}
_RANK: Final[dict[LogLevel, int]] = {level: rank for rank, level in enumerate(LEVELS.values())}


def as_level(value: object) -> LogLevel:
    """``value`` when it is a `LogLevel` constant, else info."""
    for level in _RANK:
        if value is level:
            return level
    return LEVELS["info"]


def at_least(level: LogLevel, floor: LogLevel) -> LogLevel:
    """The more severe of two levels."""
    return level if passes(level, floor) else floor


def passes(level: LogLevel, threshold: LogLevel) -> bool:
    """True when ``level`` is ``threshold`` or more severe."""
    return _RANK[level] >= _RANK[threshold]


class LogLevelError(ValueError):
    """A log level name that is not one of Twisted's."""


def parse_level(name: str) -> LogLevel:
    """``debug``, ``info``, ``warn`` (or ``warning``), ``error``, ``critical`` as a `LogLevel`."""
    word = name.strip().lower()
    if word == "warning":
        word = "warn"
    level = LEVELS.get(word)
    if level is None:
        raise LogLevelError(f"{name!r} is not a log level (debug, info, warn, error, critical)")
    return level


def is_chatter(event: Mapping[str, Any]) -> bool:
    """True for Twisted's lines about its own objects starting, stopping, connecting."""
    fmt = event.get("log_format")
    if fmt in _CHATTER_FORMATS:
        return True
    if isinstance(fmt, str) and event.get("log_namespace") == "twisted.protocols.amp":
        return bool(_AMP_CHATTER.match(fmt))
    if "log_legacy" in event or event.get("log_namespace") == "log_legacy":
        if event.get("isError"):
            return False
        text = event.get("log_text")
        if not isinstance(text, str):
            message = event.get("message")
            text = " ".join(map(str, message)) if isinstance(message, tuple) else ""
        return bool(_LEGACY_CHATTER.fullmatch(text.strip()))
    return False


def effective_level(event: Mapping[str, Any]) -> LogLevel:
    """The level ``event`` is filtered at: its own, or debug for Twisted's chatter."""
    level = as_level(event.get("log_level"))
    if not passes(level, LogLevel.warn) and is_chatter(event):
        return LEVELS["debug"]
    return level


def iso_time(seconds: float | None) -> str:
    """``2026-12-06T23:12:01.123Z``: a POSIX time as ISO-8601 UTC with milliseconds."""
    if seconds is None or not math.isfinite(seconds):
        seconds = 0.0
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def plain_value(value: Any) -> Any:
    """``value`` as JSON can hold it: itself, else its ``str`` (bytes: their ``repr``)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(value, bytes | bytearray | memoryview):
        return repr(bytes(value))
    if isinstance(value, float):
        return str(value)  # nan, inf
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((plain_value(item) for item in value), key=str)
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


def event_level_name(event: Mapping[str, Any]) -> str:
    """The event's level name (``info`` when it has none)."""
    return as_level(event.get("log_level")).name  # type: ignore[no-any-return]


def event_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's own fields: not ``log_*``, not a legacy event's bookkeeping."""
    legacy = "log_legacy" in event
    fields: dict[str, Any] = {}
    for key, value in event.items():
        if not isinstance(key, str) or key.startswith("log_"):
            continue
        if legacy and key in _LEGACY_KEYS:
            continue
        fields[key] = value
    return fields


def format_message(event: Mapping[str, Any]) -> str:
    """The event's text (a broken format string is reported, never raised)."""
    text = formatEvent(dict(event))
    if not text and "log_legacy" in event:
        message = event.get("message")
        if isinstance(message, tuple):
            text = " ".join(map(str, message))
    return text


def flat_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """The flat JSON object of one event (see the module docstring)."""
    record: dict[str, Any] = {
        "time": iso_time(event.get("log_time")),
        "level": event_level_name(event),
        "logger": str(event.get("log_namespace") or "-"),
        "message": format_message(event),
    }
    for key, value in event_fields(event).items():
        name = f"field_{key}" if key in RECORD_KEYS else key
        record[name] = plain_value(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception as error:  # a broken failure must not lose the line
            record["traceback"] = f"(traceback unavailable: {error!r})"
    return record


def json_line(event: Mapping[str, Any]) -> str:
    """One event as one line of flat JSON, newline included."""
    return json.dumps(flat_record(event), ensure_ascii=False, allow_nan=False) + "\n"


def logger_of(instance: object) -> Logger:
    """The logger ``log = Logger()`` in ``instance``'s class gives it: its class's
    namespace (``module.Class``) and ``instance`` as the source."""
    cls = type(instance)
    return Logger(namespace=f"{cls.__module__}.{cls.__name__}", source=instance)
