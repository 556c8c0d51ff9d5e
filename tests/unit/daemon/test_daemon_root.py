"""DaemonService: readiness once every child started; a failed start ends start-up."""

from __future__ import annotations

import pytest
from twisted.application.service import Service
from twisted.internet.testing import MemoryReactorClock

from sipsock.config import default_settings
from sipsock.daemon.root import DaemonService
from sipsock.registry import SocketRegistry
from sipsock.sdnotify import Notifier
from sipsock.testing import FakeStore


class Recorder(Service):
    def __init__(self, name: str, journal: list[str], error: Exception | None = None) -> None:
        self.name, self.journal, self.error = name, journal, error

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.journal.append(f"start {self.name}")
        if self.error is not None:
            raise self.error

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.journal.append(f"stop {self.name}")


def daemon() -> tuple[DaemonService, MemoryReactorClock]:
    reactor = MemoryReactorClock()  # type: ignore[no-untyped-call]
    never_opens = lambda sdef, slot: None  # noqa: E731 (no socket is opened here)
    registry = SocketRegistry(FakeStore(), never_opens, max_sockets=4, reactor=reactor)  # type: ignore[arg-type]
    notifier = Notifier.from_environ({})
    return DaemonService(
        default_settings(), registry, [], reactor=reactor, notifier=notifier
    ), reactor


def test_a_child_that_fails_while_twistd_starts_the_tree_raises_there() -> None:
    root, _ = daemon()
    journal: list[str] = []
    Recorder("pools", journal).setServiceParent(root)  # type: ignore[no-untyped-call]
    Recorder("registry", journal, RuntimeError("no table")).setServiceParent(root)  # type: ignore[no-untyped-call]
    Recorder("mi", journal).setServiceParent(root)  # type: ignore[no-untyped-call]
    with pytest.raises(RuntimeError, match="no table"):
        root.startService()
    assert journal == ["start pools", "start registry", "stop pools"]
    assert not root.readiness.ready


def test_readiness_watches_once_every_child_started() -> None:
    root, reactor = daemon()
    journal: list[str] = []
    Recorder("pools", journal).setServiceParent(root)  # type: ignore[no-untyped-call]
    root.startService()
    assert journal == ["start pools"]
    assert reactor.getDelayedCalls()  # the readiness poll runs
    root.stopService()
    assert journal == ["start pools", "stop pools"]
