"""The daemon says how it runs the SIP core: compiled by mypyc or pure Python.

The start-up log and the MI ``version`` command carry the same fact as
`sipsock.buildinfo.sip_core` in this (the tests') process, which imports the
same install.
"""

from __future__ import annotations

from sipsock.buildinfo import sip_core
from tests.integration.daemon.conftest import DaemonFactory
from tests.tables import SocketTable


def test_the_start_up_log_and_mi_version_say_how_the_sip_core_runs(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    SocketTable(sqlite_url).init()
    daemon = daemon_factory(sqlite_url)
    build = sip_core()
    assert f"SIP core: {build}" in daemon.wait_for_log((f"SIP core: {build}",), timeout=30)
    version = daemon.mi("version")
    assert version["SIP core"] == build
    assert version["Server"].startswith("sipsock ")
