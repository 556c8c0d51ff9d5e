"""tls_reload and tls_list, on real TLS domains loaded from trustme files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipsock.config import TLSDomainSettings
from sipsock.mi.builtin import build_command_table
from sipsock.mi.commands import CommandTable, MIError
from sipsock.testing import FakeRegistry
from sipsock.transport.tls import TLSDomains
from tests.tlsfiles import TestPKI


def table(tls: TLSDomains | None) -> CommandTable:
    return build_command_table(
        FakeRegistry([]),
        clock=Clock(),
        started_at=0.0,
        process_list=list,
        version="0",
        tls=tls,
    )


def result(d: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture
def domains(tmp_path: Path) -> TLSDomains:
    pki = TestPKI(tmp_path)
    files = pki.issue("server", "sip.example.com")
    return TLSDomains(
        [
            TLSDomainSettings(
                name="main", certificate=files.certificate, private_key=files.private_key
            )
        ]
    )


def test_tls_commands_exist_only_with_tls_domains(domains: TLSDomains) -> None:
    assert "tls_reload" not in table(None).names()
    assert {"tls_reload", "tls_list"} <= set(table(domains).names())


def test_tls_reload_answers_ok_or_the_report(domains: TLSDomains) -> None:
    commands = table(domains)
    assert result(commands.call("tls_reload", None)) == "OK"
    assert result(commands.call("tls_reload", {"report": True})) == {
        "reloaded": ["main"],
        "failed": [],
    }


def test_tls_reload_with_a_broken_file_is_error_500_naming_the_domain(
    domains: TLSDomains,
) -> None:
    before = result(table(domains).call("tls_list", None))[0]["sha256"]
    certificate = domains.loaded("main").settings.certificate
    certificate.write_text("nothing useful\n")
    with pytest.raises(MIError) as caught:
        result(table(domains).call("tls_reload", None))
    assert caught.value.code == 500
    assert caught.value.message == (
        f"TLS reload failed for domain 'main': certificate {certificate}: no PEM certificate "
        "in the file (old certificate kept); reloaded: none"
    )
    assert result(table(domains).call("tls_list", None))[0]["sha256"] == before
