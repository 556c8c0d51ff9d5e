# mypy: disable-error-code="no-untyped-call"
"""`ChangeQueue`: changes of one turn flushed together, one batch per kind, each its own result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from sipsock.sockdef import parse_row
from sipsock.workers.changes import ChangeQueue
from sipsock.workers.directory import BookEntry


class Recorder:
    """A `ChangeHandler` that records each batch; adoption of a listener named "bad" fails."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Any]]] = []

    async def adopt_all(self, listeners: list[Any]) -> list[Any]:
        self.batches.append(("adopt", listeners))
        return [Failure(ValueError(item)) if item == "bad" else item for item in listeners]

    async def update_all(self, listeners: list[Any]) -> None:
        self.batches.append(("update", listeners))

    async def release_all(self, listeners: list[Any]) -> None:
        self.batches.append(("release", listeners))

    async def announce_all(self, entries: list[BookEntry]) -> None:
        self.batches.append(("announce", entries))

    async def withdraw_all(self, names: list[str]) -> None:
        self.batches.append(("withdraw", names))
        raise ConnectionError("every worker gone")


def recorder(results: dict[str, Any], name: str) -> Callable[[Any], None]:
    def record(result: Any) -> None:
        results[name] = result

    return record


def test_changes_of_one_turn_go_in_one_batch_per_kind_in_order_of_first_appearance() -> None:
    handler, clock = Recorder(), MemoryReactorClock()
    queue = ChangeQueue(handler, reactor=clock, live=lambda: True)
    entry = BookEntry(parse_row(1, "tcp:127.0.0.1:5060"), None, False)
    results: dict[str, Any] = {}
    waits: dict[str, Deferred[Any]] = {
        "r1": queue.release("r1"),  # type: ignore[arg-type]
        "a1": queue.adopt("a1"),  # type: ignore[arg-type]
        "entry": queue.announce(entry),
        "bad": queue.adopt("bad"),  # type: ignore[arg-type]
        "r2": queue.release("r2"),  # type: ignore[arg-type]
        "u1": queue.update("u1"),  # type: ignore[arg-type]
        "w": queue.withdraw("tcp:127.0.0.1:9"),
    }
    for name, waiting in waits.items():
        waiting.addBoth(recorder(results, name))
    assert bool(queue.pending) and results == {}
    clock.advance(0)
    assert not queue.pending
    assert handler.batches == [
        ("release", ["r1", "r2"]),
        ("adopt", ["a1", "bad"]),
        ("announce", [entry]),
        ("update", ["u1"]),
        ("withdraw", ["tcp:127.0.0.1:9"]),
    ]
    assert [results[k] for k in ("r1", "a1", "entry", "r2", "u1")] == [None, "a1", None, None, None]
    assert isinstance(results["bad"], Failure) and results["bad"].check(ValueError)
    assert isinstance(results["w"], Failure) and results["w"].check(ConnectionError)


def test_with_no_live_worker_a_change_is_carried_out_at_once() -> None:
    handler, clock = Recorder(), MemoryReactorClock()
    queue = ChangeQueue(handler, reactor=clock, live=lambda: False)
    results: list[Any] = []
    queue.adopt("a1").addBoth(results.append)  # type: ignore[arg-type]
    assert results == ["a1"]
    assert handler.batches == [("adopt", ["a1"])]
    assert clock.getDelayedCalls() == []


def test_a_group_of_changes_has_one_deferred_with_each_result_in_place() -> None:
    handler, clock = Recorder(), MemoryReactorClock()
    queue = ChangeQueue(handler, reactor=clock, live=lambda: True)
    entry = BookEntry(parse_row(1, "tcp:127.0.0.1:5060"), None, False)
    results: dict[str, Any] = {}
    queue.adopt("a0").addBoth(recorder(results, "a0"))  # type: ignore[arg-type]
    queue.adopt_many(["a1", "bad", "a2"]).addBoth(recorder(results, "group"))  # type: ignore[list-item]
    queue.adopt("a3").addBoth(recorder(results, "a3"))  # type: ignore[arg-type]
    queue.announce_many([entry]).addBoth(recorder(results, "announced"))
    queue.adopt_many([]).addBoth(recorder(results, "empty"))
    assert results == {"empty": []}  # nothing to wait for
    clock.advance(0)
    # One batch per kind, in queue order, groups and single changes alike.
    assert handler.batches == [("adopt", ["a0", "a1", "bad", "a2", "a3"]), ("announce", [entry])]
    first, bad, last = results["group"]
    assert (first, last) == ("a1", "a2")
    assert isinstance(bad, Failure) and bad.check(ValueError)
    assert (results["a0"], results["a3"], results["announced"]) == ("a0", "a3", [None])


def test_a_batch_that_fails_whole_fails_each_change_of_a_group() -> None:
    handler, clock = Recorder(), MemoryReactorClock()

    async def broken(listeners: list[Any]) -> list[Any]:
        raise ConnectionError("every worker gone")

    handler.adopt_all = broken  # type: ignore[method-assign]
    queue = ChangeQueue(handler, reactor=clock, live=lambda: True)
    results: dict[str, Any] = {}
    queue.adopt_many(["a1", "a2"]).addBoth(recorder(results, "group"))  # type: ignore[list-item]
    queue.adopt("a3").addBoth(recorder(results, "a3"))  # type: ignore[arg-type]
    clock.advance(0)
    assert [f.check(ConnectionError) for f in results["group"]] == [ConnectionError] * 2
    assert isinstance(results["a3"], Failure) and results["a3"].check(ConnectionError)
