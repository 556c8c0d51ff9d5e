"""etc/sipsock.service passes ``systemd-analyze verify`` for the documented layout (15.2).

It used to say ``/usr/bin/twistd is not executable``. systemd need not run
here: ``verify --root`` reads units and binaries below a directory, which
holds the documented layout (a virtualenv in /opt/sipsock) and the host's
own unit files (for sysinit.target and friends).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[3]
UNIT = CHECKOUT / "etc" / "sipsock.service"
#: What ``pip install sipsock`` puts in the venv's bin/ that a unit may run.
VENV_COMMANDS = ("twistd", "sipsock-mi", "sipsock-db", "python")


def _system_units() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    raise AssertionError("no systemd unit directory with sysinit.target (apt-get install systemd)")


def _layout(root: Path) -> Path:
    """The documented server layout below ``root``; the unit's installed path."""
    shutil.copytree(_system_units(), root / "usr/lib/systemd/system", symlinks=True)
    venv_bin = root / "opt/sipsock/bin"
    venv_bin.mkdir(parents=True)
    for name in VENV_COMMANDS:
        (venv_bin / name).write_text("#!/bin/sh\n")
        (venv_bin / name).chmod(0o755)
    (root / "etc/sipsock").mkdir(parents=True)
    (root / "etc/sipsock/sipsock.toml").write_text('[core]\nstate_dir = "/var/lib/sipsock"\n')
    installed = root / "etc/systemd/system/sipsock.service"
    installed.parent.mkdir(parents=True)
    shutil.copy(UNIT, installed)
    return installed


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def test_unit_verifies_for_the_documented_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    installed = _layout(root)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are only warnings: any output is a failure.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_unit_is_type_notify_for_the_venv_and_config() -> None:
    directives = _directives(UNIT.read_text())
    assert directives["Type"] == "notify"
    assert directives["NotifyAccess"] == "main"
    assert directives["KillMode"] == "mixed"  # the daemon stops its workers itself
    start = directives["ExecStart"].split()
    assert start[0] == "/opt/sipsock/bin/twistd"
    assert start[start.index("-c") + 1] == "/etc/sipsock/sipsock.toml"
    assert start[start.index("sipsock") - 1] == "--pidfile="
    assert "-n" in start  # NotifyAccess=main: the pid systemd started must notify
    assert directives["StateDirectory"] == "sipsock"
    assert directives["ReadWritePaths"] == "/var/lib/sipsock"
