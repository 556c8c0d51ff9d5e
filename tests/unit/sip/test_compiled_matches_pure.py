"""The SIP core this checkout runs does, input for input, what the pure-Python core does.

`tests.build_behaviour` records every result (or exception) of the SIP
readers, writers, the datagram path, the OPTIONS shortcut and the stateless
proxy (whose rules are compiled too) for a corpus:
the usual messages, the RFC 4475 torture tests, the saved fuzz inputs and
thousands of seeded mutations of them. Two child processes record it: one
imports ``sipsock`` from this checkout (compiled by mypyc when the build
put extension modules beside the sources: CI's compiled pass), one from a
copy of its ``.py`` files only. Every record must be equal. In the
pure-Python pass both children run Python, so the test then shows only that
the records are reproducible across processes; the compiled pass is where
it compares two builds (``SIPSOCK_EXPECT_BUILD=compiled`` makes sure the
first child runs compiled code).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import zip_longest
from pathlib import Path

from sipsock.buildinfo import sip_core
from tests.build_behaviour import ROOT, corpus

#: The mutations: fixed, so that a difference shows again on the next run.
SEED = 4475
MUTATIONS = 5000


def pure_copy(into: Path) -> Path:
    """A copy of the checkout's ``sipsock`` package without extension modules."""
    shutil.copytree(
        ROOT / "sipsock", into / "sipsock", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    return into


def records(package_root: Path, cwd: Path, mutations: int) -> tuple[str, list[str]]:
    """The build a child importing ``sipsock`` from ``package_root`` ran, and its records."""
    env = {**os.environ, "PYTHONPATH": f"{package_root}{os.pathsep}{ROOT}"}
    env.pop("SIPSOCK_EXPECT_BUILD", None)
    child = subprocess.run(
        [sys.executable, "-m", "tests.build_behaviour", str(SEED), str(mutations)],
        cwd=cwd,  # not the checkout: ``-m`` puts the working directory first on sys.path
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")[-3000:]
    build, *lines = child.stdout.decode().splitlines()
    return build, lines


def differences(left: list[str], right: list[str], mutations: int) -> list[str]:
    """Each input whose records differ: the input and the first record that differs."""
    assert len(left) == len(right), f"{len(left)} records against {len(right)}"
    inputs = corpus(SEED, mutations)
    found = []
    for data, mine, theirs in zip(inputs, left, right, strict=True):
        if mine != theirs:
            pairs = zip_longest(json.loads(mine), json.loads(theirs), fillvalue="(nothing)")
            first = next((a, b) for a, b in pairs if a != b)
            found.append(f"input {data[:300]!r}:\n  one:   {first[0]}\n  other: {first[1]}")
    return found


def test_the_sip_core_of_this_build_behaves_as_the_pure_python_one(tmp_path: Path) -> None:
    build, mine = records(ROOT, tmp_path, MUTATIONS)
    assert build == sip_core()
    pure_build, pure = records(pure_copy(tmp_path / "pure"), tmp_path, MUTATIONS)
    assert pure_build.startswith("pure Python"), pure_build
    assert len(mine) > MUTATIONS
    found = differences(mine, pure, MUTATIONS)
    assert not found, f"{len(found)} inputs behave differently:\n" + "\n".join(found[:5])


def test_a_changed_rule_shows_as_a_difference(tmp_path: Path) -> None:
    changed = pure_copy(tmp_path / "changed")
    checks = changed / "sipsock" / "sip" / "checks.py"
    text = checks.read_text()
    assert '"malformed CSeq' in text
    checks.write_text(text.replace('"malformed CSeq', '"bad CSeq'))
    _, original = records(pure_copy(tmp_path / "pure"), tmp_path, 200)
    _, different = records(changed, tmp_path, 200)
    found = differences(original, different, 200)
    assert found
    assert "malformed CSeq" in found[0] and "bad CSeq" in found[0]


def test_a_changed_proxy_rule_shows_as_a_difference(tmp_path: Path) -> None:
    changed = pure_copy(tmp_path / "changed")
    references = changed / "sipsock" / "apps" / "proxyrules" / "references.py"
    text = references.read_text()
    assert 'VIA_PARAM: Final = "sipsock-in"' in text
    references.write_text(
        text.replace('VIA_PARAM: Final = "sipsock-in"', 'VIA_PARAM: Final = "x-in"')
    )
    _, original = records(pure_copy(tmp_path / "pure"), tmp_path, 200)
    _, different = records(changed, tmp_path, 200)
    found = differences(original, different, 200)
    assert found
    assert "proxy from a" in found[0] and ";sipsock-in=" in found[0] and ";x-in=" in found[0]
