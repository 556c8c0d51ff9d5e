"""A restarted UDP worker runs what the control process loaded, whatever the file says now.

Workers get a frozen spec at their AMP handshake (issue 17, section 1): after
the configuration file is edited (another application option, a ``[proxy]``
the application does not take, or garbage), a worker killed with SIGKILL is
replaced by one that answers exactly like the others, and does not exit in a
restart loop.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.polling import poll_until
from tests.sip_probe import options_udp
from tests.tables import SocketTable

CONFIG = """
[core]
application = "sipsock.apps:Responder"

[application]
server = "sipsock-as-loaded"

[sockets_mgm]
processes = 2
udp_balance = "reuseport"
"""

EDITS = {
    "application option": CONFIG.replace("sipsock-as-loaded", "sipsock-as-edited"),
    "proxy section": CONFIG + '\n[proxy]\nsecret = "edited"\nrecord_route = false\n',
    "garbage": "this is [not TOML at all\n\x00\x01",
}

#: Source ports probed: reuseport hashes each to a member, so both workers answer some.
PROBES = 48


def workers(daemon: Daemon) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == "dynamic"]


def server_headers(port: int) -> set[bytes]:
    """The Server header of the 200 to each of `PROBES` OPTIONS (each from its own port)."""
    seen: set[bytes] = set()
    for _ in range(PROBES):
        answer = options_udp(port, timeout=3.0)
        assert answer is not None, "an OPTIONS went unanswered"
        assert answer.startswith(b"SIP/2.0 200 "), answer[:80]
        lines = [line for line in answer.split(b"\r\n") if line.lower().startswith(b"server:")]
        seen.add(lines[0] if lines else b"(no Server header)")
    return seen


def wait_for(daemon: Daemon, check: Any, timeout: float) -> list[dict[str, Any]]:
    seen: list[list[dict[str, Any]]] = [[]]

    def matched() -> bool:
        seen[0] = workers(daemon)
        return bool(check(seen[0]))

    try:
        poll_until(matched, timeout, "workers matched")
    except AssertionError:
        raise AssertionError(f"workers never matched within {timeout} s: {seen[0]}") from None
    return seen[0]


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_worker_restarted_after_the_file_is_edited_runs_what_was_loaded(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path, edit: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, CONFIG)
    assert server_headers(port) == {b"Server: sipsock-as-loaded"}

    daemon.config.write_text(EDITS[edit])
    victim = workers(daemon)[0]
    os.kill(victim["PID"], signal.SIGKILL)

    def replaced(rows: list[dict[str, Any]]) -> bool:
        row = rows[0]
        return row["State"] == "ready" and row["PID"] not in (None, victim["PID"])

    rows = wait_for(daemon, replaced, timeout=20)
    assert rows[0]["Restarts"] == victim["Restarts"] + 1
    before = rows[0]["Handled"]
    assert server_headers(port) == {b"Server: sipsock-as-loaded"}

    def counted(rows: list[dict[str, Any]]) -> bool:
        return bool(rows[0]["Handled"] > before)

    # The replacement answered some of the probes itself, and it stays up.
    rows = wait_for(daemon, counted, timeout=10)
    assert rows[0]["PID"] not in (None, victim["PID"])
    assert rows[0]["Restarts"] == victim["Restarts"] + 1
    assert "cannot start" not in daemon.log()
