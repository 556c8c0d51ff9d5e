"""Statistics: OpenSIPS name selection, the MI view with resets, the Prometheus text."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from sipsock.mi import CommandTable
from sipsock.mi.commands import MIError
from sipsock.mi.statistics import register_statistics
from sipsock.registry import SocketEntry
from sipsock.reloadplan import Failure, Rejection, ReloadReport
from sipsock.seams import SocketCounters
from sipsock.sockdef import SocketDef, parse_row
from sipsock.stats import Statistics
from sipsock.statvalues import (
    Stat,
    StatisticsError,
    as_kinds,
    as_values,
    render_prometheus,
    select,
)
from sipsock.testing import FakeListener, FakeRegistry


class FakePool:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.refreshed = 0

    def process_rows(self) -> list[dict[str, Any]]:
        return self.rows

    def refresh(self) -> Deferred[None]:
        self.refreshed += 1
        return succeed(None)


def sdef(text: str, tag: str | None = None) -> SocketDef:
    return parse_row(None, text, None, tag)


def daemon_like() -> tuple[FakeRegistry, Statistics, FakePool]:
    static = FakeListener(
        sdef("udp:127.0.0.1:5060", tag="edge"), counters=SocketCounters(received=5, sent=4)
    )
    dynamic = FakeListener(
        sdef("tcp:127.0.0.1:5070"),
        3,
        counters=SocketCounters(received=2, bytes_in=300, connections=1),
    )
    registry = FakeRegistry(
        entries=[
            SocketEntry(dynamic.sdef, 3, dynamic),
            SocketEntry(sdef("udp:192.0.2.1:5060"), 4, None, "cannot bind"),
        ],
        static_listeners=[static],
        reloads=7,
        failed_reloads=1,
    )
    pool = FakePool(
        [{"Pool": "dynamic", "Worker": 1, "Handled": 11, "Restarts": 0, "State": "ready"}]
    )
    return registry, Statistics(registry, pools=[pool]), pool


def test_socket_groups_are_named_like_sockets_list() -> None:
    _, statistics, _ = daemon_like()
    values = as_values(statistics.snapshot())
    assert values["udp:127.0.0.1:5060:received"] == 5
    assert values["tcp:127.0.0.1:5070:bytes_in"] == 300
    assert values["sockets:received"] == 7
    assert values["sockets_mgm:reloads"] == 7
    assert values["sockets_mgm:reload_failures"] == 1
    assert values["sockets_mgm:sockets_open"] == 1
    assert values["sockets_mgm:sockets_error"] == 1
    assert values["sockets_mgm:sockets_static"] == 1
    assert values["workers:dynamic_1_handled"] == 11


def test_select_follows_opensips_rules() -> None:
    _, statistics, _ = daemon_like()
    stats = statistics.snapshot()
    assert [s.full_name for s in select(stats, ["sockets_mgm:reloads"])] == ["sockets_mgm:reloads"]
    group = select(stats, ["SOCKETS_MGM:"])
    assert {s.group for s in group} == {"sockets_mgm"}
    assert len(select(stats, ["all"])) == len(stats)
    # a bare name: the first statistic of that name (the totals come first)
    assert [s.full_name for s in select(stats, ["received"])] == ["sockets:received"]
    # an IPv6-looking group still splits on the last colon
    assert select(stats, ["tcp:127.0.0.1:5070:connections"])[0].value == 1
    # unknown names are skipped while another matches; all unknown is an error
    assert len(select(stats, ["nope", "sockets_mgm:reloads"])) == 1
    with pytest.raises(StatisticsError, match="Statistics Not Found"):
        select(stats, ["nope", "nope:"])


def test_list_statistics_says_which_are_incremental() -> None:
    _, statistics, _ = daemon_like()
    kinds = as_kinds(statistics.snapshot())
    assert kinds["sockets_mgm:reloads"] == "incremental"
    assert kinds["tcp:127.0.0.1:5070:connections"] == "non-incremental"
    assert kinds["sockets_mgm:sockets_open"] == "non-incremental"


def test_reset_changes_the_mi_view_not_prometheus() -> None:
    registry, statistics, _ = daemon_like()
    statistics.reset(select(statistics.snapshot(), ["sockets_mgm:"]))
    registry.reloads += 2
    shown = as_values(statistics.shown(statistics.snapshot()))
    assert shown["sockets_mgm:reloads"] == 2
    assert shown["sockets_mgm:sockets_open"] == 1  # gauges are never reset
    families = {
        f.name: f for f in text_string_to_metric_families(render_prometheus(statistics.snapshot()))
    }
    assert families["sipsock_reloads"].samples[0].value == 9


def test_prometheus_text_parses_and_carries_labels() -> None:
    _, statistics, _ = daemon_like()
    text = render_prometheus(statistics.snapshot())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    received = families["sipsock_socket_messages_received"]
    assert received.type == "counter"
    by_socket = {s.labels["socket"]: s for s in received.samples}
    assert by_socket["udp:127.0.0.1:5060"].value == 5
    assert by_socket["udp:127.0.0.1:5060"].labels["kind"] == "static"
    assert by_socket["tcp:127.0.0.1:5070"].labels["slot"] == "3"
    assert families["sipsock_socket_connections"].type == "gauge"
    states = {s.labels["state"]: s.value for s in families["sipsock_dynamic_sockets"].samples}
    assert states == {"open": 1, "error": 1}
    assert families["sipsock_worker_messages_handled"].samples[0].labels == {
        "pool": "dynamic",
        "worker": "1",
    }
    assert "sockets:" not in text  # totals are for the MI; Prometheus sums itself


def test_prometheus_label_values_are_escaped() -> None:
    stat = Stat("g", "n", 1, metric="odd", labels=(("tag", 'a"b\\c\nd'),), help="x\ny")
    text = render_prometheus([stat])
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels["tag"] == 'a"b\\c\nd'
    with pytest.raises(ValueError, match="label name"):
        render_prometheus([Stat("g", "n", 1, metric="m", labels=(("bad-name", "v"),))])


def test_collect_refreshes_the_worker_pools_first() -> None:
    registry = FakeRegistry()
    pool = FakePool([])
    statistics = Statistics(registry, pools=[pool], clock=Clock(), started_at=0.0)
    result: list[list[Stat]] = []
    statistics.collect().addCallback(result.append)
    assert pool.refreshed == 1
    assert as_values(result[0])["core:uptime"] == 0


def test_collect_answers_with_old_numbers_when_a_pool_is_slow() -> None:
    class SlowPool(FakePool):
        def refresh(self) -> Deferred[None]:
            return Deferred()

    clock = Clock()
    statistics = Statistics(FakeRegistry(), pools=[SlowPool([])], clock=clock, refresh_timeout=1)
    result: list[list[Stat]] = []
    statistics.collect().addCallback(result.append)
    assert result == []
    clock.advance(1.5)
    assert len(result) == 1


def test_mi_commands_answer_in_opensips_shape() -> None:
    _, statistics, _ = daemon_like()
    table = CommandTable()
    register_statistics(table, statistics)
    answers: list[Any] = []
    table.call("get_statistics", {"statistics": ["sockets_mgm:reloads"]}).addCallback(
        answers.append
    )
    # opensips-cli sends positional parameters as one array
    table.call("get_statistics", [["reloads", "sockets_mgm:sockets_open"]]).addCallback(
        answers.append
    )
    table.call("list_statistics", None).addCallback(answers.append)
    table.call("reset_statistics", {"statistics": ["sockets_mgm:reloads"]}).addCallback(
        answers.append
    )
    table.call("get_statistics", {"statistics": ["sockets_mgm:reloads"]}).addCallback(
        answers.append
    )
    assert answers[0] == {"sockets_mgm:reloads": 7}
    assert answers[1] == {"sockets_mgm:reloads": 7, "sockets_mgm:sockets_open": 1}
    assert answers[2]["sockets_mgm:reloads"] == "incremental"
    assert answers[3] == "OK"
    assert answers[4] == {"sockets_mgm:reloads": 0}
    failures: list[Any] = []
    table.call("get_statistics", {"statistics": ["nothing"]}).addErrback(failures.append)
    table.call("get_statistics", {"statistics": []}).addErrback(failures.append)
    assert isinstance(failures[0].value, MIError) and failures[0].value.code == 404
    assert failures[1].value.code == -32602


def test_last_reload_rejections_failures_and_duration_are_metrics() -> None:
    registry = FakeRegistry(reloads=2)
    statistics = Statistics(registry)
    assert as_values(select(statistics.snapshot(), ["rejected_rows", "failed_sockets"])) == {
        "sockets_mgm:rejected_rows": 0,
        "sockets_mgm:failed_sockets": 0,
    }
    registry.last_report = ReloadReport(
        rejected=[Rejection(1, "sctp:x", "bad"), Rejection(2, "udp:bad row", "bad")],
        failed=[Failure("udp:192.0.2.1:5060", "cannot bind")],
    )
    registry.reload_seconds.observe(0.003)
    registry.reload_seconds.observe(0.7)
    text = render_prometheus(statistics.snapshot())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["sipsock_reload_rejected_rows"].type == "gauge"
    assert families["sipsock_reload_rejected_rows"].samples[0].value == 2
    assert families["sipsock_reload_failed_sockets"].samples[0].value == 1
    histogram = families["sipsock_reload_duration_seconds"]
    assert histogram.type == "histogram"
    samples = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}
    assert samples[("sipsock_reload_duration_seconds_bucket", "0.005")] == 1
    assert samples[("sipsock_reload_duration_seconds_bucket", "1")] == 2
    assert samples[("sipsock_reload_duration_seconds_bucket", "+Inf")] == 2
    assert samples[("sipsock_reload_duration_seconds_count", None)] == 2
    assert samples[("sipsock_reload_duration_seconds_sum", None)] == pytest.approx(0.703)
    values = as_values(select(statistics.snapshot(), ["sockets_mgm:"]))
    assert values["sockets_mgm:reload_seconds_count"] == 2
    assert values["sockets_mgm:reload_seconds_le_+Inf"] == 2


def test_pool_sizes_and_mi_requests_are_metrics() -> None:
    from sipsock.mi import build_command_table

    registry = FakeRegistry()
    pool = FakePool(
        [
            {"Pool": "dynamic", "Worker": 1, "State": "ready", "Handled": 3, "Restarts": 0},
            {"Pool": "dynamic", "Worker": 2, "State": "restarting", "Handled": 0, "Restarts": 2},
        ]
    )
    statistics = Statistics(registry, pools=[pool])
    table = build_command_table(
        registry,
        clock=Clock(),
        started_at=0.0,
        process_list=list,
        version="1",
        statistics=statistics,
    )
    table.call("which", None)
    table.call("which", None)
    table.call("frobnicate", None).addErrback(lambda _: None)
    table.call("uptime", {"x": 1}).addErrback(lambda _: None)
    text = render_prometheus(statistics.snapshot())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("sipsock_pool_workers", (("pool", "dynamic"), ("state", "ready")))] == 1
    assert samples[("sipsock_pool_workers", (("pool", "dynamic"), ("state", "restarting")))] == 1
    assert samples[("sipsock_mi_requests_total", (("command", "which"),))] == 2
    assert samples[("sipsock_mi_requests_total", (("command", "unknown"),))] == 1
    assert samples[("sipsock_mi_failures_total", (("command", "unknown"),))] == 1
    assert samples[("sipsock_mi_failures_total", (("command", "uptime"),))] == 1
    assert samples[("sipsock_mi_failures_total", (("command", "which"),))] == 0
