"""``sipsock-mi``'s pure parts: params, the reload report request, the summary."""

from __future__ import annotations

from sipsock.mi.cli import (
    compatible_argv,
    render_answer,
    report_problems,
    summarize_report,
    with_report,
)

REPORT = {
    "added": ["udp:127.0.0.1:5070"],
    "updated": [],
    "removed": [],
    "kept": ["udp:127.0.0.1:5071"],
    "rejected": [{"id": 3, "socket": "sctp:x", "reason": "row 3: socket 'sctp:x': bad"}],
    "failed": [{"socket": "udp:192.0.2.1:5060", "reason": "cannot assign requested address"}],
    "seconds": 0.0421,
}


def test_the_old_json_params_spelling_still_works() -> None:
    assert compatible_argv(["sockets_reload", "--json", '{"report": true}']) == [
        "sockets_reload",
        "--params",
        '{"report": true}',
    ]
    assert compatible_argv(["--json", "sockets_reload"]) == ["--json", "sockets_reload"]


def test_a_reload_asks_for_its_report_unless_the_params_say() -> None:
    assert with_report("sockets_reload", None) == ({"report": True}, True)
    assert with_report("sockets_mgm:reload", {}) == ({"report": True}, True)
    assert with_report("sockets_reload", {"report": "true"}) == ({"report": "true"}, False)
    assert with_report("sockets_reload", ["1"]) == (["1"], False)
    assert with_report("sockets_list", None) == (None, False)


def test_the_summary_names_each_rejected_row_and_failed_socket() -> None:
    assert summarize_report(REPORT).splitlines() == [
        "sockets reloaded in 0.042 s: 1 added, 0 updated, 0 removed, 1 kept, 1 rejected, 1 failed",
        "rejected: row 3: socket 'sctp:x': bad",
        "failed: udp:192.0.2.1:5060: cannot assign requested address",
    ]
    assert report_problems(REPORT)
    assert not report_problems({**REPORT, "rejected": [], "failed": []})
    assert not report_problems("OK")
    assert render_answer(REPORT, summarize=True, as_json=True).startswith("{\n")
    assert render_answer("OK", summarize=True, as_json=False) == '"OK"'


def test_an_answer_after_the_timeout_is_ignored_not_an_error() -> None:
    from typing import Any

    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from sipsock.mi.cli import _call

    class Silent:
        def __init__(self) -> None:
            self.pending: Deferred[Any] = Deferred()

        def callRemote(self, amp_command: Any, **arguments: Any) -> Deferred[Any]:
            return self.pending

    clock, protocol = Clock(), Silent()
    outcome: list[Any] = []
    waiting = Deferred.fromCoroutine(_call(clock, protocol, "sockets_reload", None, 5.0))
    waiting.addBoth(outcome.append)
    clock.advance(5.0)
    assert len(outcome) == 1 and outcome[0].check(TimeoutError)
    protocol.pending.callback({"result": "OK"})  # late: dropped quietly
    assert clock.getDelayedCalls() == []
