"""JSON log lines and the twistd ``--logger`` hook."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from twisted.logger import Logger, LogLevel

from sipsock import logs


def test_each_event_is_one_json_line_with_its_fields() -> None:
    out = io.StringIO()
    observer = logs.json_file_observer(out)
    log = Logger(namespace="sipsock.registry", observer=observer)
    log.info("socket {socket} slot {slot} open", socket="udp:127.0.0.1:5060", slot=3)
    log.warn("two\nlines {x}", x=1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["socket"] == "udp:127.0.0.1:5060"
    assert first["slot"] == 3
    assert first["log_text"] == "socket udp:127.0.0.1:5060 slot 3 open"
    assert first["log_level"]["name"] == LogLevel.info.name
    assert json.loads(lines[1])["log_text"] == "two\nlines 1"


def test_use_json_logs_names_the_factory_unless_a_logger_was_given(tmp_path: Path) -> None:
    options: dict[str, Any] = {"logger": None, "logfile": str(tmp_path / "d.log")}
    assert logs.use_json_logs(options)
    assert options["logger"] == "sipsock.logs.twistd_json_observer"
    observer = logs.twistd_json_observer()
    Logger(namespace="t", observer=observer).info("hello {who}", who="json")
    observer._outFile.flush()  # type: ignore[attr-defined]
    record = json.loads((tmp_path / "d.log").read_text().splitlines()[0])
    assert record["who"] == "json"
    given: dict[str, Any] = {"logger": "x.y"}
    assert not logs.use_json_logs(given)
    assert given["logger"] == "x.y"
