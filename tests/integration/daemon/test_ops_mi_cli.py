"""``sipsock-mi`` against the real daemon: the reload report by default, exit statuses,
and the last reload's rejected rows and failed sockets in the statistics and /metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_ops_metrics import metrics
from tests.net import free_port
from tests.tables import SocketTable

SIPSOCK_MI = str(Path(sys.executable).with_name("sipsock-mi"))


def sipsock_mi(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIPSOCK_MI, "-c", str(daemon.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=daemon.workdir,
    )


def test_reload_prints_its_report_and_exits_3_on_rejected_rows_or_failed_sockets(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    good = f"udp:127.0.0.1:{free_port()}"
    table.insert(good)
    daemon = daemon_factory(sqlite_url)
    clean = sipsock_mi(daemon, "sockets_reload")
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("sockets reloaded in ")
    assert "0 added, 0 updated, 0 removed, 1 kept, 0 rejected, 0 failed" in clean.stdout

    bad = table.insert("sctp:127.0.0.1:5999")
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken.bind(("127.0.0.1", 0))
        busy = f"udp:127.0.0.1:{taken.getsockname()[1]}"
        table.insert(busy)
        done = sipsock_mi(daemon, "sockets_reload")
        assert done.returncode == 3, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert "1 kept, 1 rejected, 1 failed" in lines[0]
        assert lines[1] == (
            f"rejected: row {bad}: socket 'sctp:127.0.0.1:5999': protocol sctp is not a "
            "SIP transport (use udp, tcp, tls, ws or wss)"
        )
        assert lines[2].startswith(f"failed: {busy}: ")
        as_json = sipsock_mi(daemon, "--json", "sockets_reload")
        assert as_json.returncode == 3
        report = json.loads(as_json.stdout)
        assert [r["id"] for r in report["rejected"]] == [bad]
        assert [f["socket"] for f in report["failed"]] == [busy]
        # The JSON-RPC answer stays OpenSIPS's "OK" unless asked for the report.
        assert daemon.mi("sockets_reload") == "OK"
        values = daemon.mi(
            "get_statistics",
            {"statistics": ["sockets_mgm:rejected_rows", "sockets_mgm:failed_sockets"]},
        )
        assert values == {"sockets_mgm:rejected_rows": 1, "sockets_mgm:failed_sockets": 1}
        samples = metrics(daemon)
        assert samples["sipsock_reload_rejected_rows"][()] == 1
        assert samples["sipsock_reload_failed_sockets"][()] == 1
        assert samples["sipsock_reload_duration_seconds_count"][()] >= 4
    finally:
        taken.close()
    table.delete(bad)
    fixed = sipsock_mi(daemon, "sockets_reload")
    assert fixed.returncode == 0, fixed.stdout
    samples = metrics(daemon)
    assert samples["sipsock_reload_rejected_rows"][()] == 0
    assert samples["sipsock_reload_failed_sockets"][()] == 0


def test_exit_statuses_name_what_went_wrong(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    SocketTable(sqlite_url).init()
    daemon = daemon_factory(sqlite_url)
    unknown = sipsock_mi(daemon, "frobnicate")
    assert unknown.returncode == 1
    assert "ERROR: -32601: Method not found" in unknown.stderr
    missing = tmp_path / "nowhere" / "sipsock-mi.sock"
    refused = subprocess.run(
        [SIPSOCK_MI, "-s", str(missing), "which"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert f"cannot connect to the MI socket {missing}" in refused.stderr
    old_spelling = sipsock_mi(daemon, "sockets_reload", "--json", '{"report": true}')
    assert old_spelling.returncode == 0, old_spelling.stderr
    assert json.loads(old_spelling.stdout)["kept"] == []
