"""SIPp call scenarios through the proxy, with header checks filled in per test.

``tests/scenarios/proxy_uac.xml`` and ``proxy_uas.xml`` are templates: each
``@NAME_CHECKS@`` line becomes an ``<action>`` of SIPp ``ereg`` checks (a
failed check fails the call), ``@REFERENCES@`` names the variables they
assign. `write_scenario` writes the filled copy into a test's directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

SCENARIOS = Path(__file__).parent / "scenarios"
_POSIX_SPECIAL = set(".[]()*+?{}|^$\\")


def literal(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching only itself."""
    return "".join(f"\\{ch}" if ch in _POSIX_SPECIAL else ch for ch in text)


@dataclass(frozen=True)
class Check:
    """One SIPp ``ereg`` check: ``regexp`` (POSIX ERE) found in the message.

    With ``header`` (``"Via:"``) only that header's value is searched, its
    ``occurrence``-th one (1 = topmost) when given. ``absent`` inverts it.
    """

    regexp: str
    header: str | None = None
    occurrence: int | None = None
    absent: bool = False


def _action(checks: Sequence[Check], names: list[str]) -> str:
    if not checks:
        return ""
    lines = ["    <action>"]
    for check in checks:
        name = f"check{len(names) + 1}"
        names.append(name)
        attributes = [f"regexp={quoteattr(check.regexp)}"]
        if check.header is None:
            attributes.append('search_in="msg"')
        else:
            attributes += ['search_in="hdr"', f"header={quoteattr(check.header)}"]
            if check.occurrence is not None:
                attributes.append(f'occurrence="{check.occurrence}"')
        attributes.append('check_it_inverse="true"' if check.absent else 'check_it="true"')
        attributes.append(f'assign_to="{name}"')
        lines.append(f"      <ereg {' '.join(attributes)}/>")
    lines.append("    </action>")
    return "\n".join(lines)


def write_scenario(
    template: str, directory: Path, *, pause_ms: int = 500, **checks: Sequence[Check]
) -> Path:
    """Fill ``template`` (a file name in tests/scenarios) and write it into ``directory``.

    Keyword ``invite=[...]`` fills ``@INVITE_CHECKS@``, and so on; every
    placeholder not given is left empty. ``pause_ms`` is the caller's pause
    between ACK and BYE: two datagrams sent back to back may be forwarded
    in either order by two UDP workers.
    """
    text = (SCENARIOS / template).read_text().replace("@PAUSE@", str(pause_ms))
    names: list[str] = []
    for key, items in checks.items():
        placeholder = f"@{key.upper()}_CHECKS@"
        if placeholder not in text:
            raise ValueError(f"{template} has no {placeholder}")
        text = text.replace(placeholder, _action(items, names))
    lines = [line for line in text.splitlines() if not line.strip().endswith("_CHECKS@")]
    text = "\n".join(lines) + "\n"
    references = f'  <Reference variables="{",".join(names)}"/>' if names else ""
    text = text.replace("@REFERENCES@", references)
    path = directory / f"{Path(template).stem}-{len(list(directory.glob('*.xml')))}.xml"
    path.write_text(text)
    return path
