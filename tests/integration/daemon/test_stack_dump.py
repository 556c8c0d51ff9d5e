"""A hung daemon can be asked where it is: ``kill -USR2`` prints every process's stacks."""

from __future__ import annotations

from tests.integration.daemon.conftest import DaemonFactory


def test_usr2_prints_the_stacks_of_the_control_process_and_its_workers_and_serving_goes_on(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    daemon = daemon_factory(sqlite_url)
    asked = daemon.dump_stacks()
    assert len(asked) >= 3  # the control process and its two UDP workers (TEST_PROCESSES)
    # A worker's standard error reaches the log through the control process.
    daemon.wait_for_log(("most recent call first",), timeout=10)
    assert daemon.mi("which")  # still serving
    assert daemon.stop() == 0
    assert daemon.proc is not None and daemon.proc.stdout is not None
    control_stderr = daemon.proc.stdout.read().decode(errors="replace")
    assert "most recent call first" in control_stderr
    assert "in run" in control_stderr  # the reactor's loop, where an idle daemon waits
