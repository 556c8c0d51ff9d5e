"""Coverage-guided fuzzing of the `tests.fuzz_targets` with atheris (libFuzzer), in a subprocess.

`run_atheris` starts ``python -m tests.fuzzer TARGET [libFuzzer options]
[corpus dirs]`` and reads libFuzzer's figures from its output; a crash (an
unexpected exception or a broken property) ends that run and leaves the input
in the artifact folder, read back into `FuzzRun.crashes`. The child
instruments the sipsock modules (and the targets) as it imports them, so
this module imports nothing of sipsock at its top.

Used by the bounded run of the test suite (``tests/unit/sip/test_fuzz_atheris.py``)
and by ``bench/fuzz.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
#: Saved inputs that once broke a target, and seeds: replayed by the tests.
FUZZ_DATA: Final = ROOT / "tests" / "data" / "fuzz"
#: RFC 4475 torture messages, the first seeds of every target.
RFC4475_DATA: Final = ROOT / "tests" / "data" / "rfc4475"
#: SIP tokens libFuzzer splices into its mutations.
SIP_DICTIONARY: Final = ROOT / "tests" / "data" / "sip.dict"

_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)


class FuzzerError(Exception):
    """atheris could not be run (not installed, bad options); the message says why."""


@dataclass
class Crash:
    """One input that broke a target: where libFuzzer saved it and its bytes."""

    path: Path
    data: bytes


@dataclass
class FuzzRun:
    """What one atheris run did, from libFuzzer's final statistics."""

    target: str
    returncode: int
    seconds: float
    executions: int = 0
    execs_per_second: int = 0
    new_units: int = 0
    peak_rss_mb: int = 0
    slowest_unit_seconds: int = 0
    coverage: int = 0
    features: int = 0
    corpus_units: int = 0
    crashes: list[Crash] = field(default_factory=list)
    output: str = ""

    @property
    def failed(self) -> bool:
        """Whether the run ended on a crash (or ended abnormally)."""
        return self.returncode != 0 or bool(self.crashes)

    def describe_crashes(self) -> str:
        """The crashing inputs and the traceback, for a test failure or the bench output."""
        lines = [f"atheris {self.target}: exit status {self.returncode}"]
        for crash in self.crashes:
            lines.append(f"  input {crash.path.name} ({len(crash.data)} bytes): {crash.data!r}")
        start = self.output.find("=== Uncaught Python exception")
        lines.append(self.output[start : start + 6000] if start >= 0 else self.output[-4000:])
        return "\n".join(lines)


def run_atheris(
    target: str,
    *,
    corpus: Path,
    seeds: Sequence[Path] = (),
    artifacts: Path,
    runs: int | None = None,
    max_seconds: int = 60,
    max_len: int = 4096,
    input_timeout: int = 10,
    dictionary: Path | None = SIP_DICTIONARY,
    seed: int | None = None,
    deadline: float | None = None,
) -> FuzzRun:
    """Fuzz ``target`` (a key of ``tests.fuzz_targets.TARGETS``) in a child process.

    ``corpus`` is the working corpus (new inputs are written there);
    ``seeds`` are read-only folders of starting inputs. The run stops after
    ``runs`` inputs (None: no limit) or ``max_seconds``, whichever is first,
    or at the first crash; an input that takes more than ``input_timeout``
    seconds is a crash too. The child is killed at ``deadline`` seconds
    (default: ``max_seconds`` plus a minute for start-up and the corpus).
    """
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "tests.fuzzer",
        target,
        f"-max_total_time={max_seconds}",
        f"-max_len={max_len}",
        f"-timeout={input_timeout}",
        f"-artifact_prefix={artifacts}{os.sep}",
        "-print_final_stats=1",
        "-rss_limit_mb=1024",
    ]
    if runs is not None:
        command.append(f"-runs={runs}")
    if seed is not None:
        command.append(f"-seed={seed}")
    if dictionary is not None:
        command.append(f"-dict={dictionary}")
    command += [str(corpus), *(str(path) for path in seeds)]
    before = set(artifacts.iterdir())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=deadline if deadline is not None else max_seconds + 60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FuzzerError(f"atheris {target} did not stop within {exc.timeout} s") from exc
    output = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    if "No module named 'atheris'" in output:
        raise FuzzerError("atheris is not installed: pip install -e '.[test]'")
    run = FuzzRun(target, done.returncode, time.monotonic() - started, output=output)
    _read_figures(run, output)
    for path in sorted(set(artifacts.iterdir()) - before):
        if path.is_file():
            run.crashes.append(Crash(path, path.read_bytes()))
    return run


def _read_figures(run: FuzzRun, output: str) -> None:
    stats = {name: int(value) for name, value in _STAT.findall(output)}
    run.executions = stats.get("number_of_executed_units", 0)
    run.execs_per_second = stats.get("average_exec_per_sec", 0)
    run.new_units = stats.get("new_units_added", 0)
    run.peak_rss_mb = stats.get("peak_rss_mb", 0)
    run.slowest_unit_seconds = stats.get("slowest_unit_time_sec", 0)
    progress = _PROGRESS.findall(output)
    if progress:
        _, coverage, features, corpus = progress[-1]
        run.coverage, run.features, run.corpus_units = int(coverage), int(features), int(corpus)


def _child(argv: list[str]) -> None:
    """``python -m tests.fuzzer TARGET [libFuzzer arguments]``: fuzz in this process."""
    import atheris  # type: ignore[import-untyped]

    if len(argv) < 2:
        raise SystemExit("usage: python -m tests.fuzzer TARGET [libFuzzer options] [corpus...]")
    with atheris.instrument_imports(include=["sipsock", "tests.fuzz_targets"]):
        from tests import fuzz_targets
    target = fuzz_targets.TARGETS.get(argv[1]) or fuzz_targets.SELF_TESTS.get(argv[1])
    if target is None:
        raise SystemExit(f"unknown target {argv[1]!r}: one of {', '.join(fuzz_targets.TARGETS)}")
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    _child(sys.argv)
