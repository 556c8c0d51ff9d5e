"""``etc/sipsock.service``: the systemd unit runs twistd in the foreground, as planned."""

from __future__ import annotations

import configparser
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "etc" / "sipsock.service"


def test_unit_runs_the_daemon_in_the_foreground_with_the_bind_capability() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].endswith(
        "twistd -n --pidfile= sipsock -c /etc/sipsock/sipsock.toml"
    )
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
