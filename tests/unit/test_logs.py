"""Log lines: flat JSON records, the level filter, Twisted's chatter, the twistd hook."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import Logger, LogLevel, formatEventAsClassicLogText, formatTime
from twisted.python.failure import Failure

from sipsock import logs
from sipsock.logevents import LogLevelError, effective_level, flat_record, parse_level

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_event_is_one_flat_json_object_with_its_fields() -> None:
    out = io.StringIO()
    log = Logger(namespace="sipsock.registry", observer=logs.json_file_observer(out))
    log.info("socket {socket} slot {slot} open", socket="udp:127.0.0.1:5060", slot=3)
    log.warn("two\nlines {x}", x=1, peer=("10.0.0.1", 5060))
    first, second = lines_of(out)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert ISO_UTC.fullmatch(first["time"]), first["time"]
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "sipsock.registry",
        "message": "socket udp:127.0.0.1:5060 slot 3 open",
        "socket": "udp:127.0.0.1:5060",
        "slot": 3,
    }
    assert second["level"] == "warn"
    assert second["message"] == "two\nlines 1"
    assert second["peer"] == ["10.0.0.1", 5060]
    assert not [key for key in first if key.startswith("log_")]


def test_fields_json_cannot_hold_are_written_as_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    record = flat_record(
        {
            "log_level": LogLevel.error,
            "log_format": "x",
            "log_time": 0.0,
            "raw": b"\x00SIP",
            "thing": Thing(),
            "error": OSError(90, "Message too long"),
            "ratio": float("nan"),
            "nested": {"a": [b"b"]},
            "message": "a field named like a record key",
        }
    )
    assert record["time"] == "1970-01-01T00:00:00.000Z"
    assert record["raw"] == repr(b"\x00SIP")
    assert record["thing"] == "a thing"
    assert record["error"] == "[Errno 90] Message too long"
    assert record["ratio"] == "nan"
    assert record["nested"] == {"a": [repr(b"b")]}
    assert record["message"] == "x"
    assert record["field_message"] == "a field named like a record key"
    json.dumps(record, allow_nan=False)


def test_a_failure_has_its_traceback_text() -> None:
    out = io.StringIO()
    log = Logger(namespace="sipsock.x", observer=logs.json_file_observer(out))
    try:
        raise ValueError("broken row")
    except ValueError:
        failure = Failure()  # type: ignore[no-untyped-call]
        log.failure("reload crashed on {socket}", failure, socket="udp:1.2.3.4:5060")
    (record,) = lines_of(out)
    assert record["level"] == "critical"
    assert record["message"] == "reload crashed on udp:1.2.3.4:5060"
    assert "ValueError: broken row" in record["traceback"]
    assert "Traceback" in record["traceback"]


def test_twisteds_chatter_counts_as_debug() -> None:
    chatter = [
        {"log_format": "Starting factory {factory!r}", "log_level": LogLevel.info},
        {
            "log_format": "{cls} connection established (HOST:{host} PEER:{peer})",
            "log_namespace": "twisted.protocols.amp",
            "log_level": LogLevel.info,
        },
        {
            "log_legacy": True,
            "log_namespace": "log_legacy",
            "log_text": "Site starting on 8888",
            "log_level": LogLevel.info,
        },
        {
            "log_legacy": True,
            "message": ("(UNIX Port /var/sipsock-mi.sock Closed)",),
            "log_level": LogLevel.info,
        },
    ]
    for event in chatter:
        assert effective_level(event) == LogLevel.debug, event
    kept = {"log_format": "socket {socket} open", "log_level": LogLevel.info}
    assert effective_level(kept) == LogLevel.info
    failed = {"log_format": "Starting factory {factory!r}", "log_level": LogLevel.error}
    assert effective_level(failed) == LogLevel.error


def test_the_level_filter_drops_what_is_below_it() -> None:
    out = io.StringIO()
    observer = logs.LevelFilter(logs.json_file_observer(out), parse_level("warn"))
    log = Logger(namespace="sipsock.x", observer=observer)
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    assert [r["message"] for r in lines_of(out)] == ["w", "e"]


def test_level_names() -> None:
    assert parse_level("WARNING") == LogLevel.warn
    assert parse_level("debug") == LogLevel.debug
    with pytest.raises(LogLevelError, match="'loud' is not a log level"):
        parse_level("loud")


def test_use_sipsock_logs_names_its_factory_and_applies_format_and_level(
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {"logger": None, "logfile": str(tmp_path / "d.log")}
    logs.use_sipsock_logs(options, log_format="json", log_level="warn")
    assert options["logger"] == "sipsock.logs.twistd_observer"
    observer = logs.twistd_observer()
    log = Logger(namespace="t", observer=observer)
    log.info("hidden {who}", who="json")
    log.warn("shown {who}", who="json")
    observer.observer._outFile.flush()  # type: ignore[attr-defined]
    (record,) = [json.loads(x) for x in (tmp_path / "d.log").read_text().splitlines()]
    assert (record["who"], record["message"]) == ("json", "shown json")


def test_a_given_logger_keeps_its_output_under_the_level() -> None:
    out = _GIVEN[0]
    options: dict[str, Any] = {"logger": f"{__name__}.given_observer"}
    logs.use_sipsock_logs(options, log_format="text", log_level="error")
    observer = logs.twistd_observer()
    Logger(namespace="t", observer=observer).warn("below")
    Logger(namespace="t", observer=observer).error("above")
    assert [r["message"] for r in lines_of(out)] == ["above"]


_GIVEN = [io.StringIO()]


def given_observer() -> Any:
    return logs.json_file_observer(_GIVEN[0])


def test_text_lines_show_a_worker_traceback_field() -> None:
    line = logs.text_line(
        {
            "log_format": "UDP worker {worker}: {line}",
            "log_level": LogLevel.error,
            "log_time": 0.0,
            "worker": "dynamic/1",
            "line": "boom",
            "traceback": "Traceback (most recent call last):\nValueError: x\n",
        }
    )
    assert line is not None
    assert "UDP worker dynamic/1: boom" in line
    assert "\tValueError: x" in line


def test_the_time_of_a_text_line_is_worked_out_once_per_second() -> None:
    """`SecondTimes` gives Twisted's `formatTime` text, formatting each second once."""
    seconds: list[float | None] = []

    def counted(when: float | None) -> str:
        seconds.append(when)
        return formatTime(when)

    times = logs.SecondTimes(counted)
    base = 1_796_660_000.0
    moments = [base + i / 100 for i in range(250)] + [base + 2.9999996, base + 3.0000001]
    for when in moments:
        assert times(when) == formatTime(when), when
    assert [when for when in seconds if when is not None and when < base + 2.5] == [
        base,
        base + 1,
        base + 2,
    ]
    for odd in (None, -1.5, 0.0, 0.9999999):
        assert times(odd) == formatTime(odd)
    event = {"log_format": "x", "log_time": base + 0.5, "log_namespace": "n", "log_level": None}
    assert logs.text_line(event) == formatEventAsClassicLogText(event)
