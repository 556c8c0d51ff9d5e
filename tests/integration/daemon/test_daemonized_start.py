"""``twistd sipsock`` without ``-n``: a start-up error after the fork still ends it, with a word.

twistd forks before the children bind; its first process waits for the
daemon to say it started. A bind error must reach it (exit 1, the reason on
standard error and in full in the log), never leave it waiting.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.daemon import TWISTD


def test_a_bind_error_after_the_fork_ends_twistd_with_status_1(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    config = tmp_path / "sipsock.toml"
    config.write_text(
        f'[core]\nstate_dir = "{tmp_path}/var"\nlisten = ["udp:127.0.0.1:{port}"]\n'
        "[mi]\nhttp = false\n[sockets_mgm]\nprocesses = 1\n"
    )
    pidfile, log = tmp_path / "twistd.pid", tmp_path / "twistd.log"
    try:
        result = subprocess.run(
            [TWISTD, f"--pidfile={pidfile}", f"--logfile={log}", "sipsock", "-c", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        holder.close()
    assert result.returncode == 1
    # twistd passes on the first 100 bytes of the error; the log has the whole line.
    assert f"StartupError: {str(config)[:20]}" in result.stderr
    assert (
        f"sipsock cannot start: {config}: [core] listen: cannot open static socket "
        f"udp:127.0.0.1:{port}: port already in use"
    ) in log.read_text()
    assert not pidfile.exists()
