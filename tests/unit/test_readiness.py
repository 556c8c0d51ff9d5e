"""sipsock.readiness: when the daemon says ready, and what it says (fake clock, real socket)."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.task import Clock

from sipsock.readiness import DaemonState, Readiness, summary
from sipsock.sdnotify import Notifier

STARTING = DaemonState(
    static_open=1,
    dynamic_open=0,
    dynamic_failed=0,
    workers_ready=0,
    workers_total=2,
    mi=("sipsock-mi var/sipsock-mi.sock", "http 127.0.0.1:8888"),
    database="sqlite:///var/sipsock.sqlite",
    table="loading",
)


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__("/unused")
        self.sent: list[dict[str, str]] = []

    def send(self, **fields: str) -> bool:
        self.sent.append(fields)
        return True


def test_summary() -> None:
    state = replace(STARTING, dynamic_open=3, dynamic_failed=1, workers_ready=2, table="failed")
    assert summary(state) == (
        "sockets: 1 static, 3 dynamic open, 1 failed; workers: 2/2 ready; "
        "MI: sipsock-mi var/sipsock-mi.sock, http 127.0.0.1:8888; "
        "database: sqlite:///var/sipsock.sqlite (table load failed, retrying)"
    )


def test_ready_after_first_load_and_workers_then_status_on_change() -> None:
    clock = Clock()
    state = [STARTING]
    notifier = Recorder()
    readiness = Readiness(lambda: state[0], notifier, clock=clock, workers_timeout=30)
    readiness.start()
    clock.advance(1)
    state[0] = replace(STARTING, table="loaded")  # loaded, workers still starting
    clock.advance(1)
    assert notifier.sent == []
    state[0] = replace(STARTING, table="loaded", workers_ready=2)
    clock.advance(0.05)
    assert notifier.sent == [{"READY": "1", "STATUS": summary(state[0])}]
    clock.advance(5)  # nothing changed: nothing sent
    assert len(notifier.sent) == 1
    state[0] = replace(state[0], dynamic_open=1)
    clock.advance(1)
    assert notifier.sent[-1] == {"STATUS": summary(state[0])}
    readiness.stop()
    assert notifier.sent[-1] == {"STOPPING": "1", "STATUS": "stopping"}
    clock.advance(10)
    assert len(notifier.sent) == 3


def test_workers_that_never_get_ready_do_not_hold_ready_back() -> None:
    clock = Clock()
    state = replace(STARTING, table="failed", workers_ready=1)
    notifier = Recorder()
    readiness = Readiness(lambda: state, notifier, clock=clock, workers_timeout=30)
    readiness.start()
    clock.advance(29)
    assert notifier.sent == []
    clock.advance(1.1)
    assert readiness.ready
    assert notifier.sent[0]["STATUS"].startswith("sockets: 1 static, 0 dynamic open; workers: 1/2")


def test_watchdog_pings_at_half_the_interval() -> None:
    clock = Clock()
    notifier = Recorder()
    notifier.watchdog_usec = 10_000_000
    readiness = Readiness(lambda: STARTING, notifier, clock=clock)
    readiness.start()
    clock.advance(5)
    clock.advance(5)
    assert notifier.sent.count({"WATCHDOG": "1"}) == 3
    readiness.stop()


def test_outside_systemd_only_the_ready_line() -> None:
    clock = Clock()
    readiness = Readiness(
        lambda: replace(STARTING, table="loaded", workers_ready=2), Notifier(None), clock=clock
    )
    readiness.start()
    assert readiness.ready
    assert clock.getDelayedCalls() == []  # no status loop left running
    readiness.stop()
