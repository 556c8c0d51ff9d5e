"""ARCHITECTURE.rst names every module of the package, and only those.

The code map is kept true by every change that adds, moves, splits or removes
a module; this test is what makes a forgotten update fail.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "ARCHITECTURE.rst"


def package_modules() -> set[str]:
    """Every module of ``sipsock/`` by dotted name (a package by its own name)."""
    names: set[str] = set()
    for path in (ROOT / "sipsock").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


def mapped_modules() -> set[str]:
    """The modules the "Modules" section of ARCHITECTURE.rst lists (one ````name```` a line)."""
    text = MAP.read_text(encoding="utf-8")
    section = text.split("\nModules\n=======\n", 1)[1]
    return set(re.findall(r"^``(sipsock(?:\.[A-Za-z_][A-Za-z0-9_]*)*)``\s*$", section, re.M))


def test_every_module_is_on_the_map() -> None:
    missing = package_modules() - mapped_modules()
    assert not missing, f"ARCHITECTURE.rst lacks these modules: {sorted(missing)}"


def test_the_map_names_no_module_that_is_gone() -> None:
    gone = mapped_modules() - package_modules()
    assert not gone, f"ARCHITECTURE.rst names modules that do not exist: {sorted(gone)}"


def test_the_map_renders_without_warnings() -> None:
    from docutils.core import publish_doctree
    from docutils.utils import Reporter

    warnings: list[str] = []

    class Collect:
        def write(self, text: str) -> None:
            warnings.append(text)

    publish_doctree(
        MAP.read_text(encoding="utf-8"),
        settings_overrides={"warning_stream": Collect(), "report_level": Reporter.WARNING_LEVEL},
    )
    assert not warnings, "".join(warnings)
