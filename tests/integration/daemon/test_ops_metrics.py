"""Statistics of the real daemon: the stock OpenSIPS clients, ``GET /metrics`` under SIPp
traffic, and JSON log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.sipp import run_sipp
from tests.tables import SocketTable

BIN = Path(sys.executable).parent
OPENSIPS_MI = str(BIN / "opensips-mi")
OPENSIPS_CLI = str(BIN / "opensips-cli")


def metrics(daemon: Daemon) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``GET /metrics`` parsed by prometheus_client: {sample name: {labels: value}}."""
    url = f"http://127.0.0.1:{daemon.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def of_socket(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, socket: str
) -> float:
    for labels, value in samples[name].items():
        if ("socket", socket) in labels:
            return value
    raise AssertionError(f"{name} has no sample for {socket}: {samples[name]}")


def clean_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The OpenSIPS clients read ./.env and ~/.opensips-cli.cfg: a clean directory and HOME.
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def busy(daemon_factory: DaemonFactory, sqlite_url: str) -> tuple[Daemon, str, int]:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", tag="trunk")
    daemon = daemon_factory(sqlite_url)
    return daemon, f"udp:127.0.0.1:{port}", port


def test_metrics_are_prometheus_text_and_move_with_sipp_traffic(
    busy: tuple[Daemon, str, int], tmp_path: Path
) -> None:
    daemon, socket, port = busy
    before = metrics(daemon)
    assert of_socket(before, "sipsock_socket_messages_received_total", socket) == 0
    assert before["sipsock_reloads_total"][()] >= 1
    assert before["sipsock_dynamic_sockets"][(("state", "open"),)] == 1
    result = run_sipp(f"127.0.0.1:{port}", calls=30, rate=60, workdir=tmp_path)
    assert result.ok, result.output
    after = metrics(daemon)
    assert of_socket(after, "sipsock_socket_messages_received_total", socket) >= 30
    assert of_socket(after, "sipsock_socket_messages_sent_total", socket) >= 30
    # SIPp sent requests only; every message sent back was a reply.
    assert of_socket(after, "sipsock_socket_replies_received_total", socket) == 0
    assert of_socket(after, "sipsock_socket_replies_sent_total", socket) == of_socket(
        after, "sipsock_socket_messages_sent_total", socket
    )
    assert of_socket(after, "sipsock_socket_bytes_received_total", socket) > 30 * 100
    handled = sum(after["sipsock_worker_messages_handled_total"].values())
    assert handled >= 30
    labels = next(iter(k for k in after["sipsock_socket_drops_total"] if ("socket", socket) in k))
    assert ("tag", "trunk") in labels and ("kind", "dynamic") in labels
    post = urllib.request.Request(
        f"http://127.0.0.1:{daemon.http_port}/metrics", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=5)
    assert refused.value.code == 405


def test_stock_opensips_clients_read_statistics_and_sockets(
    busy: tuple[Daemon, str, int], tmp_path: Path
) -> None:
    daemon, socket, port = busy
    clean = tmp_path / "clean"
    clean.mkdir()
    run_sipp(f"127.0.0.1:{port}", calls=5, rate=50, workdir=tmp_path)
    http = ["-t", "http", "-i", "127.0.0.1", "-p", str(daemon.http_port)]
    stats = clean_run([OPENSIPS_MI, *http, "-s", "sockets_mgm:reloads", f"{socket}:"], clean)
    assert stats.returncode == 0, stats.stdout + stats.stderr
    answer = json.loads(stats.stdout)
    assert answer["sockets_mgm:reloads"] >= 1
    assert answer[f"{socket}:received"] >= 5
    missing = clean_run([OPENSIPS_MI, *http, "-s", "no_such_statistic"], clean)
    assert "Statistics Not Found" in missing.stdout + missing.stderr
    url = f"http://127.0.0.1:{daemon.http_port}/mi"
    cli = [OPENSIPS_CLI, "-o", "communication_type=http", "-o", f"url={url}", "-x", "mi"]
    listed = clean_run([*cli, "sockets_list"], clean)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == [{"socket": socket, "tag": "trunk"}]
    got = clean_run([*cli, "get_statistics", "sockets_mgm:", "reloads"], clean)
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["sockets_mgm:sockets_open"] == 1
    kinds = clean_run([*cli, "list_statistics"], clean)
    assert json.loads(kinds.stdout)[f"{socket}:connections"] == "non-incremental"
    reset = clean_run([*cli, "reset_statistics", f"{socket}:received"], clean)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert daemon.mi("get_statistics", {"statistics": [f"{socket}:received"]}) == {
        f"{socket}:received": 0
    }


def _opened(record: dict[str, object], port: int) -> bool:
    """The log line that says the socket on ``port`` is open (others name it too)."""
    return record.get("socket") == f"udp:127.0.0.1:{port}" and "open" in str(record.get("message"))


def test_json_log_lines_carry_socket_and_slot(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(sqlite_url, '[core]\nlog_format = "json"\n')
    deadline = time.monotonic() + 10
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
        if any(_opened(r, port) for r in records):
            break
        time.sleep(0.1)
    opened = [r for r in records if _opened(r, port)]
    assert opened, records[-5:]
    assert opened[0]["slot"] == 0
    assert "open" in str(opened[0]["message"])
    assert all("time" in r and "level" in r for r in records)
