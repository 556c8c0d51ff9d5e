"""The settings layer imports only pure rules (README/ARCHITECTURE import direction)."""

from __future__ import annotations

import json
import subprocess
import sys

#: What ``sipsock.config`` may load: itself and the pure rules it checks values with.
PURE_RULES = (
    "sipsock.config",
    "sipsock.sip",
    "sipsock.sockdef",
    "sipsock.addresses",
    "sipsock.scaling",
)


def loaded_after_import(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(name for name in sys.modules "
        "if name.startswith(('sipsock', 'twisted', 'zope')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_config_loads_no_io_no_application_and_not_the_proxys_rules() -> None:
    loaded = loaded_after_import("sipsock.config")
    outside = [name for name in loaded if name != "sipsock" and not name.startswith(PURE_RULES)]
    assert outside == []
    assert "sipsock.config.proxy" in loaded


def test_the_proxy_rules_live_under_apps() -> None:
    loaded = loaded_after_import("sipsock.apps.proxyrules")
    assert "sipsock.apps.proxyrules.forwarding" in loaded
    assert "sipsock.apps.proxyrules.references" in loaded
