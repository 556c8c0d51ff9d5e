"""A short coverage-guided run of atheris over each fuzz target (bounded: about 25 s in all).

Each target of `tests.fuzz_targets` runs in its own process for at most
`RUNS` inputs or `SECONDS` seconds, seeded with the RFC 4475 torture
messages and the saved inputs of ``tests/data/fuzz``. A crash fails the test
with the input and the traceback; save the input under ``tests/data/fuzz/``
(``test_fuzz_regressions.py`` replays it) and fix the code. The long run is
``bench/fuzz.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz_targets import SELF_TESTS, TARGETS
from tests.fuzzer import FUZZ_DATA, RFC4475_DATA, run_atheris

RUNS = 200_000
SECONDS = 3


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_no_crash(target: str, tmp_path: Path) -> None:
    run = run_atheris(
        target,
        corpus=tmp_path / "corpus",
        seeds=[RFC4475_DATA, FUZZ_DATA],
        artifacts=tmp_path / "crashes",
        runs=RUNS,
        max_seconds=SECONDS,
        deadline=120,
    )
    assert not run.failed, run.describe_crashes()
    assert run.executions > 0, f"atheris {target} ran nothing:\n{run.output[-3000:]}"
    assert run.coverage > 0, f"atheris {target} saw no coverage:\n{run.output[-3000:]}"


@pytest.mark.timeout(180)
def test_a_crash_fails_the_run_and_names_the_input(tmp_path: Path) -> None:
    assert "planted-crash" in SELF_TESTS
    run = run_atheris(
        "planted-crash",
        corpus=tmp_path / "corpus",
        artifacts=tmp_path / "crashes",
        runs=RUNS,
        max_seconds=60,
        deadline=120,
    )
    assert run.failed
    [crash] = run.crashes
    assert crash.data.startswith(b"FUZZ")
    report = run.describe_crashes()
    assert repr(crash.data) in report
    assert "ValueError: the planted bug" in report
