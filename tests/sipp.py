"""Run SIPp, the real SIP client, from tests. Fails (never skips) without it."""

from __future__ import annotations

import csv
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.net import free_port

SCENARIOS = Path(__file__).parent / "scenarios"

#: One OPTIONS as ``scenarios/options_uac.xml`` makes SIPp send it over UDP
#: (call 1, SIPp on port 5061, the daemon on 5070).
SIPP_OPTIONS = (
    b"OPTIONS sip:service@127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\n"
    b"To: <sip:service@127.0.0.1:5070>\r\n"
    b"Call-ID: 1-1234@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError(
            "SIPp is not installed: the test command (scripts/test) installs Debian's "
            "sip-tester package; run it, or apt-get install sip-tester"
        )
    return path


@dataclass(frozen=True)
class SippResult:
    """How a SIPp run ended."""

    returncode: int
    successful: int
    failed: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0


class SippRun:
    """A SIPp process running in the background; `wait` gives its `SippResult`."""

    def __init__(self, args: list[str], stat: Path, workdir: Path, timeout: float) -> None:
        self.stat = stat
        self.timeout = timeout
        self.proc = subprocess.Popen(
            args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self) -> SippResult:
        try:
            output, _ = self.proc.communicate(timeout=self.timeout + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        successful, failed = _final_counts(self.stat)
        return SippResult(self.proc.returncode, successful, failed, output[-4000:])


def start_sipp(
    target: str,
    *,
    scenario: str = "options_uac.xml",
    transport: str = "u1",
    calls: int = 10,
    rate: float = 10,
    workdir: Path,
    timeout: float = 60,
    local_port: int | None = None,
    extra: tuple[str, ...] = (),
) -> SippRun:
    """Start SIPp sending ``calls`` scenario runs to ``target`` (host:port)."""
    stat = workdir / f"sipp-{free_port()}.csv"
    args = [
        sipp_binary(),
        target,
        "-sf",
        str(SCENARIOS / scenario),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port or free_port()),
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-nostdin",
        "-buff_size",
        "4194304",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        *extra,
    ]
    return SippRun(args, stat, workdir, timeout)


def run_sipp(target: str, **options: Any) -> SippResult:
    """Run SIPp to the end (same options as `start_sipp`)."""
    return start_sipp(target, **options).wait()


def _final_counts(stat: Path) -> tuple[int, int]:
    if not stat.exists():
        return 0, 0
    with stat.open(newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last, strict=False))
    return int(values.get("SuccessfulCall(C)", 0)), int(values.get("FailedCall(C)", 0))
