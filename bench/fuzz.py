"""Coverage-guided fuzzing of the parser, the stream framer and the datagram dispatch. Not a test.

Run from the repository root (10 minutes with the defaults)::

    .venv/bin/python bench/fuzz.py
    .venv/bin/python bench/fuzz.py --minutes 3 --targets parse,framer --corpus /tmp/sip-corpus

Each target of `tests.fuzz_targets` (``parse``: `sipsock.sip.parse` and
everything done with a parsed message; ``values``: one header value through
the Via, address, CSeq and number readers; ``framer``: `StreamFramer.feed`
under arbitrary cuttings; ``datagram``: a datagram through the real UDP
protocol, dispatcher and responder; ``options``: the OPTIONS shortcut against
the general path) is fuzzed by atheris (libFuzzer) for its share of the
time, in a child process, seeded with ``tests/data/rfc4475`` and
``tests/data/fuzz``, with the SIP tokens of ``tests/data/sip.dict``. New
inputs go to ``--corpus`` (kept between runs when given). A crash ends the
child; the input is saved under ``--artifacts`` and printed, and fuzzing
resumes with the corpus gathered so far until the target's time is used.
The table shows executions, executions per second, libFuzzer's coverage
counters (``cov``: edges of the instrumented sipsock code reached; ``ft``:
features) and corpus size at the end, peak memory, the slowest input (whole
seconds) and the crashes; an input slower than ``--input-timeout`` counts as
a crash (an input that hangs a worker is one). Coverage guidance does not
see inside the regex engine: exponential backtracking was found by reading,
not by this run (``tests/unit/sip/test_fuzz_regressions.py``).
A saved crash belongs in ``tests/data/fuzz/`` with a regression test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import print_table

from tests.fuzz_targets import TARGETS
from tests.fuzzer import FUZZ_DATA, RFC4475_DATA, FuzzRun, run_atheris

#: Runs shorter than this are not started (start-up and corpus loading dominate).
MIN_RUN_SECONDS = 5


def fuzz_target(
    target: str, seconds: float, corpus: Path, artifacts: Path, max_len: int, input_timeout: int
) -> tuple[list[FuzzRun], float]:
    """Fuzz ``target`` for ``seconds``, restarting after each crash; the runs and wall time."""
    runs: list[FuzzRun] = []
    started = time.monotonic()
    while True:
        left = int(seconds - (time.monotonic() - started))
        if left < MIN_RUN_SECONDS:
            break
        run = run_atheris(
            target,
            corpus=corpus,
            seeds=[RFC4475_DATA, FUZZ_DATA],
            artifacts=artifacts,
            max_seconds=left,
            max_len=max_len,
            input_timeout=input_timeout,
        )
        runs.append(run)
        print(
            f"{target}: {run.executions} executions in {run.seconds:.0f} s, "
            f"cov {run.coverage}, ft {run.features}, corpus {run.corpus_units}, "
            f"exit {run.returncode}",
            flush=True,
        )
        if run.failed:
            print(run.describe_crashes(), flush=True)
        if run.returncode != 0 and not run.crashes:
            break  # not a crash libFuzzer saved: rerunning would only repeat it
    return runs, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}"
    )
    parser.add_argument("--corpus", type=Path, help="corpus folder (default: a new temporary one)")
    parser.add_argument("--artifacts", type=Path, help="crash folder (default: inside --corpus)")
    parser.add_argument("--max-len", type=int, default=8192, help="longest input (default 8192)")
    parser.add_argument(
        "--input-timeout",
        type=int,
        default=2,
        help="seconds one input may take before it counts as a crash (default 2)",
    )
    args = parser.parse_args()
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in targets if name not in TARGETS]
    if unknown or not targets:
        parser.error(f"unknown targets {unknown}: choose from {', '.join(TARGETS)}")
    base = args.corpus or Path(tempfile.mkdtemp(prefix="sipsock-fuzz-"))
    artifacts = args.artifacts or base / "crashes"
    share = args.minutes * 60 / len(targets)
    print(f"corpus {base}, crashes {artifacts}, {share:.0f} s per target", flush=True)
    rows = []
    for target in targets:
        runs, wall = fuzz_target(
            target, share, base / target, artifacts, args.max_len, args.input_timeout
        )
        executions = sum(run.executions for run in runs)
        last = runs[-1] if runs else None
        crashes = sum(len(run.crashes) for run in runs)
        rows.append(
            [
                target,
                f"{wall:.0f}",
                executions,
                f"{executions / wall:.0f}" if wall else "0",
                last.coverage if last else 0,
                last.features if last else 0,
                last.corpus_units if last else 0,
                max((run.peak_rss_mb for run in runs), default=0),
                max((run.slowest_unit_seconds for run in runs), default=0),
                crashes,
            ]
        )
    print_table(
        f"atheris, {args.minutes:g} minutes, max_len {args.max_len}",
        [
            "target",
            "seconds",
            "executions",
            "exec/s",
            "cov",
            "ft",
            "corpus",
            "rss MB",
            "slowest s",
            "crashes",
        ],
        rows,
    )
    saved = sorted(artifacts.glob("*")) if artifacts.exists() else []
    for path in saved:
        print(f"crash input {path}: {path.read_bytes()[:300]!r}")


if __name__ == "__main__":
    main()
