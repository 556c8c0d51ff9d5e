"""``etc/grafana/sipsock.json`` asks only for metrics and labels that a running daemon's
``/metrics`` has, so the dashboard cannot rot as metrics change."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.tables import SocketTable

DASHBOARD = Path(__file__).resolve().parents[3] / "etc" / "grafana" / "sipsock.json"
METRIC = re.compile(r"\bsipsock_[A-Za-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: Labels Prometheus adds to every scraped sample.
TARGET_LABELS = frozenset({"instance", "job"})


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, expression, legend format) of every query, template ones included."""
    found: list[tuple[str, str, str]] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            found.append((f"${variable['name']}", variable["definition"], ""))
    return found


def scrape(daemon: Daemon) -> dict[str, set[str]]:
    """{sample name: the label names it has} from the daemon's /metrics."""
    url = f"http://127.0.0.1:{daemon.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    assert len(queries(dashboard)) >= 20


def test_every_metric_and_label_the_dashboard_asks_for_is_served(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    table.insert(f"udp:127.0.0.1:{free_port()}", tag="trunk")
    table.insert(f"tcp:127.0.0.1:{free_port(udp=False)}")
    daemon = daemon_factory(sqlite_url, f'[core]\nlisten = ["udp:127.0.0.1:{free_port()}"]\n')
    daemon.mi("sockets_list")
    samples = scrape(daemon)
    problems: list[str] = []
    for title, expr, legend in queries(json.loads(DASHBOARD.read_text())):
        names = set(METRIC.findall(expr))
        if not names:
            problems.append(f"{title}: no sipsock metric in {expr!r}")
        missing = sorted(name for name in names if name not in samples)
        problems += [f"{title}: {name} is not in /metrics" for name in missing]
        offered = TARGET_LABELS.union(*(samples.get(name, set()) for name in names))
        grouped = {
            label.strip()
            for group in GROUPING.findall(expr)
            for label in group.split(",")
            if label.strip()
        }
        matched = {label for sel in SELECTOR.findall(expr) for label in MATCHER.findall(sel)}
        for label in sorted((grouped | matched) - offered):
            problems.append(f"{title}: no metric of {sorted(names)} has a {label!r} label")
        for label in LEGEND.findall(legend):
            if label not in grouped and label not in offered:
                problems.append(f"{title}: legend uses {label!r}, which the query drops")
            elif grouped and label not in grouped:
                problems.append(f"{title}: legend uses {label!r}, not kept by the aggregation")
    assert not problems, "\n".join(problems)
