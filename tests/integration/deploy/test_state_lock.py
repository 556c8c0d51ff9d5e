"""One daemon per state directory, and a second one says who holds it (issue 15.3).

It used to stop with ``cannot listen on MI socket ...: Cannot acquire lock``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.daemon import TWISTD, Daemon
from tests.net import free_port


def _second(daemon: Daemon, workdir: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    """Start another daemon on ``daemon``'s state directory (its own MI port, pid file)."""
    workdir.mkdir(exist_ok=True)
    config = workdir / "sipsock.toml"
    config.write_text(
        f'[core]\nstate_dir = "{daemon.state_dir}"\n'
        f"[sockets_mgm]\nprocesses = 1\n"
        f"[mi]\nhttp_port = {free_port(udp=False)}\n{extra}"
    )
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sipsock", "-c", str(config)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_second_daemon_on_a_state_dir_names_the_running_one(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = Daemon(tmp_path / "first")
    first.start()
    try:
        second = _second(first, tmp_path / "second")
        assert second.returncode == 1, second.stdout + second.stderr
        message = (second.stdout + second.stderr).strip().splitlines()[-1]
        assert message == (
            f"sipsock: sipsock is already running (pid {first.pid}) "
            f"with state_dir {first.state_dir}"
        )
        assert "Cannot acquire lock" not in second.stdout + second.stderr
        assert first.mi("which")  # the running daemon is untouched
    finally:
        assert first.stop() == 0


def test_state_dir_is_free_again_after_a_crash(tmp_path: Path) -> None:
    """SIGKILL leaves the lock file behind, but not the lock: the next start succeeds."""
    (tmp_path / "a").mkdir()
    crashed = Daemon(tmp_path / "a")
    crashed.start()
    lock_file = crashed.state_dir / "sipsock.lock"
    assert lock_file.read_text().strip() == str(crashed.pid)
    workers = [row["PID"] for row in crashed.mi("ps")["Processes"] if row["ID"] != 0]
    assert workers
    for pid in workers:  # workers hold no copy of the lock (close-on-exec)
        fds = Path(f"/proc/{pid}/fd")
        assert str(lock_file) not in {os.readlink(fd) for fd in fds.iterdir()}
    assert crashed.proc is not None
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.proc.wait(10)
    again = Daemon(tmp_path / "a")
    again.start()
    try:
        assert lock_file.read_text().strip() == str(again.pid)
    finally:
        assert again.stop() == 0


def test_shared_mi_socket_names_the_running_daemon(tmp_path: Path) -> None:
    """Two state directories, one ``[mi] socket``: the message names the holder too."""
    mi_socket = tmp_path / "mi.sock"
    (tmp_path / "first").mkdir()
    first = Daemon(tmp_path / "first", extra=f'[mi]\nsocket = "{mi_socket}"\n')
    first.start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        config = other / "sipsock.toml"
        config.write_text(
            f'[core]\nstate_dir = "{other / "var"}"\n[sockets_mgm]\nprocesses = 1\n'
            f'[mi]\nhttp_port = {free_port(udp=False)}\nsocket = "{mi_socket}"\n'
        )
        done = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "sipsock", "-c", str(config)],
            cwd=other,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert f"MI socket {mi_socket} is in use: sipsock is already running (pid {first.pid})" in (
            output
        )
    finally:
        assert first.stop() == 0
