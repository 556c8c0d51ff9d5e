"""The one "held" rule of the rate benchmarks (bench/common.py), issue 16.19.

SIPp's "0 failed calls" hid 37,585 retransmissions at 40,000/s, and the
UDP pool bench did not read kernel drops: such a run is not held.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from common import RateFigures


@dataclass
class Run(RateFigures):
    rate: float
    calls: int
    successful: int
    failed: int
    retransmissions: int
    kernel_drops: int | None
    elapsed: float
    daemon_cpu: float = 1.0


def run(**changes: object) -> Run:
    fields: dict[str, object] = {
        "rate": 40_000,
        "calls": 200_000,
        "successful": 200_000,
        "failed": 0,
        "retransmissions": 0,
        "kernel_drops": 0,
        "elapsed": 5.0,
    }
    fields.update(changes)
    return Run(**fields)  # type: ignore[arg-type]


def test_a_clean_run_is_held() -> None:
    assert run().held
    assert str(run().verdict) == "held"
    assert run(retransmissions=200).held  # 0.1 % of the calls


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"retransmissions": 37_585}, "37585 retransmissions (18.79% of calls > 0.1%)"),
        ({"retransmissions": 201}, "201 retransmissions"),
        ({"kernel_drops": 3}, "3 datagrams dropped by the kernel"),
        ({"kernel_drops": None}, "kernel drops unknown"),
        ({"failed": 1, "successful": 199_999}, "1 failed calls"),
        ({"successful": 199_000}, "1000 calls unanswered"),
        ({"elapsed": 6.0}, "achieved < 95% of 40,000/s"),
    ],
)
def test_a_run_with_retransmissions_drops_or_failures_is_not_held(
    changes: dict[str, object], reason: str
) -> None:
    figures = run(**changes)
    assert not figures.held
    assert reason in str(figures.verdict)
