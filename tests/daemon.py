"""The real daemon, started with ``twistd -n sipsock -c FILE`` as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sipsock.stackdump import STACK_DUMP_SIGNAL
from tests.net import free_port

TWISTD = str(Path(sys.executable).with_name("twistd"))
# The registry logs one of these when its first load of the table is over.
INITIAL_LOAD_DONE = ("sockets reloaded in", "loading the dynamic sockets failed")
#: UDP workers of a test daemon unless its config says ``processes``: the
#: default 8 is heavy on a 2-core machine shared by parallel test runs.
TEST_PROCESSES = 2


class MIError(Exception):
    """A JSON-RPC error answered by the daemon's MI."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class Daemon:
    """One sipsock daemon with its own state directory, database and MI port."""

    def __init__(self, workdir: Path, *, db_url: str | None = None, extra: str = "") -> None:
        self.workdir = workdir
        self.state_dir = workdir / "var"
        self.http_port = free_port(udp=False)
        self.db_url = db_url or f"sqlite:///{self.state_dir / 'sipsock.sqlite'}"
        self.config = workdir / "sipsock.toml"
        self.logfile = workdir / "twistd.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config()

    def write_config(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra = extra
        has_processes = re.search(r"^\s*processes\s*=", self.extra, re.M)
        processes = "" if has_processes else f"processes = {TEST_PROCESSES}\n"
        sections = {
            "sockets_mgm": f'db_url = "{self.db_url}"\n{processes}',
            "core": f'state_dir = "{self.state_dir}"\n',
            "mi": f"http_port = {self.http_port}\n",
        }
        text = self.extra
        for name, body in sections.items():
            header = f"[{name}]\n"
            if header in text:
                text = text.replace(header, header + body, 1)
            else:
                text += f"\n{header}{body}"
        self.config.write_text(text)

    def start(self, timeout: float = 30, *, new_session: bool = False) -> None:
        """Start twistd; ``new_session`` puts it (and its workers) in a session of its own.

        In its own session the daemon leads a process group that a test can
        signal whole (``os.killpg``), as systemd does with ``KillMode=control-group``.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "--pidfile",
                str(self.workdir / "twistd.pid"),
                "--logfile",
                str(self.logfile),
                "sipsock",
                "-c",
                str(self.config),
            ],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=new_session,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                self.mi("which")
            except (OSError, MIError):
                time.sleep(0.05)
                continue
            self.wait_for_log(INITIAL_LOAD_DONE, deadline - time.monotonic())
            self.wait_for_workers(deadline)
            return
        raise RuntimeError(f"daemon did not answer its MI within {timeout} s:\n{self.log()}")

    def wait_for_workers(self, deadline: float) -> None:
        """Wait until every UDP worker listed by ``ps`` has taken the current sockets."""
        while time.monotonic() < deadline:
            rows = self.mi("ps")["Processes"]
            if all(row.get("State", "ready") == "ready" for row in rows):
                return
            time.sleep(0.05)
        raise RuntimeError(f"UDP workers not ready in time:\n{self.log()}")

    def wait_for_log(self, patterns: tuple[str, ...], timeout: float) -> str:
        """Wait until the log holds one of ``patterns``; returns the one found."""
        deadline = time.monotonic() + max(timeout, 0.1)
        while time.monotonic() < deadline:
            text = self.log()
            for pattern in patterns:
                if pattern in text:
                    return pattern
            time.sleep(0.05)
        raise RuntimeError(
            f"daemon log has none of {patterns} after {timeout:.1f} s:\n{self.log()}"
        )

    def output(self) -> str:
        if self.proc is None or self.proc.stdout is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace") + "\n" + self.log()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def mi(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """Call the JSON-RPC MI over HTTP; returns the result or raises MIError."""
        body = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": "1"}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/mi",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise MIError(answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

    def reload(self) -> dict[str, Any]:
        report: dict[str, Any] = self.mi("sockets_reload", {"report": True})
        return report

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 10) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = self.dump_stacks()
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(
                f"daemon did not stop within {timeout} s:\n{self.log()}\n"
                f"Python stacks (SIGUSR2) of pids {stacks}:\n{self.output()}"
            ) from None

    def dump_stacks(self, settle: float = 1.0) -> list[int]:
        """Ask the daemon and its workers for their Python stacks (``kill -USR2``).

        The control process prints them on its standard error (this harness's
        ``output``); a worker's go through the control process into the log.
        Returns the pids asked.
        """
        pids = [self.pid, *descendants(self.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, STACK_DUMP_SIGNAL)
        time.sleep(settle)  # the handlers write at once; give the pipes a moment
        return pids


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children first."""
    found: list[int] = []
    pending = child_pids(pid)
    while pending:
        child = pending.pop(0)
        found.append(child)
        pending.extend(child_pids(child))
    return found
